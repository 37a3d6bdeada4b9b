"""moto in server mode on loopback — the embedded stack's AWS API — and boto3 clients for it.

moto keeps one backend object per (service, account, region) in its ``BackendDict`` registries
(``moto.<service>.models.<service>_backends[account][region]``); every request handler looks its backend up
there. The stack puts its own backend *instances* (subclasses of moto's, see :mod:`local.sagemaker_backend`
and :mod:`local.observed_backends`) into those slots for its account and region while it runs
(:func:`install_backend`), and puts back what was there when it stops. Nothing of moto is patched.

moto's server builds one WSGI app per service through the factory given to its
``DomainDispatcherApplication`` (moto's own ``moto_server`` passes ``create_backend_app``). ``AwsServer`` passes
a factory that builds moto's app and, for a service whose response class the stack extends, routes that app to
the subclass — the only way to add an API operation moto lacks (``UpdateEndpoint``) or to read a request
parameter moto drops (a processing job's ``Environment``).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
from typing import Any, Callable

ACCOUNT = "123456789012"  # moto's default account: every ARN the stack prints uses it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install_backend(registry: Any, account: str, region: str, backend: Any) -> Callable[[], None]:
    """Put ``backend`` in moto's registry slot ``registry[account][region]``; returns the undo.

    The undo resets the backend (moto's ``reset``: e.g. S3 releases its bucket names, which moto keeps in a
    registry shared by all accounts, and closes its temporary files) and puts back what was in the slot.
    """
    slot = registry[account]
    previous = dict.get(slot, region)  # dict.get: does not create moto's default backend on the way
    slot[region] = backend

    def restore() -> None:
        if dict.get(slot, region) is not backend:
            return
        backend.reset()
        if previous is None:
            del slot[region]
        else:
            slot[region] = previous

    return restore


class MotoUrls:
    """Mixin for a subclass of a moto backend defined outside moto: moto's service URL table.

    moto finds a backend's URL table (its server's routes) through the module the backend's class is defined in
    (``moto.<service>.models`` → ``moto.<service>.urls``, ``BaseBackend._url_module``); its server builds a
    service's routes from the backend in the default account's slot, which may be the stack's subclass. A subclass
    defined in ``local`` therefore names the URL module of the moto class it extends. This is the one private
    member of moto overridden here: moto has no public way to say where a backend's routes are.
    """

    @property
    def _url_module(self) -> Any:
        moto_class = next(c for c in type(self).__mro__ if c.__module__.startswith("moto.") and c.__module__.endswith(".models"))
        return importlib.import_module(moto_class.__module__.rsplit(".", 1)[0] + ".urls")


def cloudwatch_backend(region: str) -> Any:
    """moto's CloudWatch backend: its received datapoints are what the alarm evaluator reads."""
    from moto.cloudwatch.models import cloudwatch_backends

    return cloudwatch_backends[ACCOUNT][region]


class AwsServer:
    """moto's WSGI dispatcher on a threaded loopback server; ``url`` is what AWS_ENDPOINT_URL points at.

    ``responses`` maps a moto service name to a subclass of that service's response class; every request to
    the service is dispatched to the subclass (see the module docstring).
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", responses: dict[str, type] | None = None):
        self.host = host
        self.port = port or free_port()
        self.responses = dict(responses or {})
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _create_app(self, service: str) -> Any:
        from moto.core.utils import convert_to_flask_response
        from moto.moto_server.werkzeug_app import create_backend_app

        app = create_backend_app(service)
        subclass = self.responses.get(service)
        if subclass is not None:
            view = convert_to_flask_response(subclass.dispatch)
            for endpoint, handler in list(app.view_functions.items()):
                owner = getattr(getattr(handler, "callback", None), "__self__", None)
                if isinstance(owner, type) and issubclass(subclass, owner):
                    app.view_functions[endpoint] = view
        return app

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(self._create_app)
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


def client_environment(url: str, region: str) -> dict[str, str]:
    """Environment that points boto3 (and the AWS CLI) at the local AWS API with throwaway credentials."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_SESSION_TOKEN": "local",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


_clients: dict[tuple[str, str, str], Any] = {}
_clients_lock = threading.Lock()


def client(service: str, url: str, region: str) -> Any:
    """A cached boto3 client for the local AWS API (clients are thread-safe; creating them is slow)."""
    import boto3
    from botocore.config import Config

    key = (service, url, region)
    with _clients_lock:
        if key not in _clients:
            session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                            aws_session_token="local", region_name=region)
            _clients[key] = session.client(
                service, endpoint_url=url, config=Config(retries={"mode": "standard", "max_attempts": 3})
            )
        return _clients[key]


def clean_environ(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        env.pop(name, None)
    return env


def put_metrics(cloudwatch: Any, namespace: str, data: list[dict[str, Any]]) -> None:
    """PutMetricData, logged and swallowed on error: a metric lost must never stop the stack's own work."""
    try:
        for i in range(0, len(data), 500):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i:i + 500])
    except Exception:
        logging.getLogger("local.aws").exception("put_metric_data %s failed", namespace)
