"""Tests of harness/study."""
