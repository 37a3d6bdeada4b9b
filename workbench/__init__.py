"""The data scientist's workbench: the production image trained locally through the SageMaker SDK, logged to the
stack's MLflow; a registered model reproduced from its records. See docs/experimenting.md."""
