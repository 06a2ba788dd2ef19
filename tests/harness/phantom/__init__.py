"""Tests of harness/phantom."""
