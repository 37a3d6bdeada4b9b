"""Validate a new data file against the production model's expectation suite and reference profile."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
