"""Hearth test suite."""
