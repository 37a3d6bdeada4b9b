"""Fixtures for the control-plane tests: lambda/ on sys.path (``lambda`` is a keyword, so it cannot be
imported as a package), the environment the stack sets, and a moto account holding the stack's resources."""
from __future__ import annotations

import pytest

from .helpers import ENV, REGION, Aws  # importing helpers puts lambda/ on sys.path


@pytest.fixture
def env(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    from mlops_control import clients, settings

    settings.reset()
    clients.reset()
    yield ENV
    settings.reset()
    clients.reset()


@pytest.fixture
def aws(env):
    from moto import mock_aws

    with mock_aws():
        yield Aws()


