"""Tests of factories."""
