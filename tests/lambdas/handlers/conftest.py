"""Fixtures shared by the handler tests."""
from __future__ import annotations

import pytest

from ..helpers import handlers_sagemaker


@pytest.fixture
def sm(aws):
    """moto's SageMaker plus UpdateEndpoint (which moto lacks), with training metrics and one validated file."""
    return handlers_sagemaker(aws)
