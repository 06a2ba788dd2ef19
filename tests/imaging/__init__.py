"""Tests of imaging."""
