"""boto3 clients, created on first use and reused across invocations of a warm Lambda.

Created lazily so that importing a handler stays cheap and a function only pays for the services it
calls. boto3 honours AWS_ENDPOINT_URL, which is how the local stack points everything at moto.
"""
from __future__ import annotations

from typing import Any

_clients: dict[str, Any] = {}
_overrides: dict[str, Any] = {}


def get(service: str) -> Any:
    if service in _overrides:
        return _overrides[service]
    client = _clients.get(service)
    if client is None:
        import boto3
        from botocore.config import Config

        # Standard mode retries throttling with backoff; what still fails after that is raised to the
        # caller, recorded, and re-raised so Lambda's retries and the dead-letter queue keep the event.
        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
        client = _clients[service] = boto3.client(service, config=config)
    return client


def override(service: str, client: Any) -> None:
    """Use this client for a service (tests: botocore Stubber; local stack: its own SageMaker shim)."""
    _overrides[service] = client


def reset() -> None:
    _clients.clear()
    _overrides.clear()


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Message", "")) or str(exc)


def is_not_found(exc: BaseException) -> bool:
    """SageMaker reports a missing resource as ValidationException 'Could not find ...'."""
    code = error_code(exc)
    message = error_message(exc).lower()
    return code in ("ResourceNotFound", "ResourceNotFoundException", "NoSuchKey", "404", "NotFound", "NoSuchVersion") or (
        code == "ValidationException" and ("could not find" in message or "does not exist" in message)
    )


def is_already_exists(exc: BaseException) -> bool:
    """Real SageMaker rejects a duplicate job/model/config name (ResourceInUse, or ValidationException)."""
    code = error_code(exc)
    message = error_message(exc).lower()
    return code in ("ResourceInUse", "ResourceInUseException") or (
        code == "ValidationException" and ("already exist" in message or "must be unique" in message)
    )


def is_conditional_failure(exc: BaseException) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"
