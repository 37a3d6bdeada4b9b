"""CDK stacks of the self-retraining ML service: storage, pipeline, serving, monitoring."""
