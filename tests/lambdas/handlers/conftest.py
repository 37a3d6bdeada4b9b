"""Fixtures shared by the handler tests."""
from __future__ import annotations

import pytest

from ..helpers import SageMakerWithUpdateEndpoint


@pytest.fixture
def sm(aws):
    """moto's SageMaker plus UpdateEndpoint (which moto lacks), with training metrics and one validated file."""
    from mlops_control import clients

    proxy = SageMakerWithUpdateEndpoint(aws.sm)
    aws.inject_training_metrics(aws.sm)
    aws.write_model_artifacts(aws.sm)
    clients.override("sagemaker", proxy)
    aws.upload("validated/base.csv")
    return proxy
