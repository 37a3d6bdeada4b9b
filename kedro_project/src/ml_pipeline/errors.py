"""Errors that carry a message meant for a human (written to SageMaker's failure/message files)."""


class DataError(ValueError):
    """The input data cannot be used; the message says why and what to fix."""


class ConfigError(ValueError):
    """A parameter or hyperparameter is invalid."""
