"""Clean the training data, infer its schema, split it 70/20/10 and profile it for validation and drift."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
