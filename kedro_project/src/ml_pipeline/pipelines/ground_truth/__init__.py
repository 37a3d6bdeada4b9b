"""Join labels uploaded for captured requests with the captured features: new labeled training data and the
production model's quality on it."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
