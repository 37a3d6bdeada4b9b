"""Synthesize each stage once per session (jsii synthesis is slow) and share the cloud assemblies."""

from __future__ import annotations

import pytest

from stack_synth import Synth, synthesize


@pytest.fixture(scope="session")
def dev(tmp_path_factory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-dev"), {"stage": "dev"})


@pytest.fixture(scope="session")
def prod(tmp_path_factory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-prod"), {"stage": "prod"})


@pytest.fixture(scope="session")
def dev_api_key(tmp_path_factory) -> Synth:
    """dev with the API in API-key mode (the one config switch that changes the resource set)."""
    return synthesize(tmp_path_factory.mktemp("cdk-dev-apikey"), {"stage": "dev", "api_auth": "api_key"})


@pytest.fixture(scope="session", params=["dev", "prod", "dev_api_key"])
def synth(request) -> Synth:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def dev_no_tracking(tmp_path_factory) -> Synth:
    """dev with mlflow_tracking off: no MLflow App, no tracking role, no track jobs."""
    return synthesize(tmp_path_factory.mktemp("cdk-dev-notracking"), {"stage": "dev", "mlflow_tracking": "false"})
