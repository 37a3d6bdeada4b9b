"""ML Pipeline: validate, train, evaluate, serve and monitor a tabular model."""

__version__ = "0.1.0"
