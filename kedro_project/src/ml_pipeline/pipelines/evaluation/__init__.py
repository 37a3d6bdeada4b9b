"""Metrics on the test and validation splits, permutation importance, the HTML report and metadata.json."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
