"""Drift and data quality of the requests the endpoint captured, against the production model's reference."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
