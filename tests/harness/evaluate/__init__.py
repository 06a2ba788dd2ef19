"""Tests of harness/evaluate."""
