"""Control plane of the self-retraining ML service: pure, importable functions under thin handlers.

boto3 only (the Lambda runtime provides it); nothing here imports the SageMaker SDK.
"""
