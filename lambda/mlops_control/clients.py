"""AWS clients (botocore, which boto3 is built on), created on first use and reused across invocations of a warm Lambda.

Created lazily so that importing a handler stays cheap and a function only pays for the services it
calls. botocore honours AWS_ENDPOINT_URL, which is how the local stack points everything at moto.
"""
from __future__ import annotations

from typing import Any

_clients: dict[str, Any] = {}
_overrides: dict[str, Any] = {}
_session: Any = None


def get(service: str) -> Any:
    if service in _overrides:
        return _overrides[service]
    client = _clients.get(service)
    if client is None:
        # botocore's session directly (what boto3.client wraps): boto3's resource layer is never used here
        # and importing it costs a cold start ~15% more.
        import botocore.session
        from botocore.config import Config

        global _session
        if _session is None:
            _session = botocore.session.get_session()
        # Standard mode retries throttling with backoff; what still fails after that is raised to the
        # caller, recorded, and re-raised so Lambda's retries and the dead-letter queue keep the event.
        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
        client = _clients[service] = _session.create_client(service, config=config)
    return client


def prewarm(*services: str) -> None:
    """Create the clients every invocation of a handler needs while the function initialises, so that a
    snapshot (Lambda SnapStart) or a provisioned environment already holds them. Best effort: without a
    region or credentials (e.g. an import outside Lambda) the first invocation creates them instead."""
    for service in services:
        try:
            get(service)
        except Exception:  # noqa: BLE001
            _clients.pop(service, None)
            return


def override(service: str, client: Any) -> None:
    """Use this client for a service (tests: botocore Stubber, or moto wrapped with what it lacks)."""
    _overrides[service] = client


def reset(*, session: bool = False) -> None:
    """Forget the clients (and overrides); `session=True` also drops the botocore session, whose loaded
    service models and resolved credentials are otherwise kept."""
    global _session
    if session:
        _session = None
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
