"""Benchmarks: every speed target measured against a baseline in the same run (see README.md)."""
