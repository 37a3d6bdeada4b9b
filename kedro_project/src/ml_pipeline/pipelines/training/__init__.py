"""Fit the model Pipeline on the train split (optionally tuned by randomised search with k-fold CV)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
