"""Tests of harness/metrics."""
