"""Tests of harness/data."""
