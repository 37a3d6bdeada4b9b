"""local.tracking_server: the MLflow app as `mlflow server` on loopback (SQLite), stopped with all its processes."""

import os
import subprocess

import pytest

from local.tracking_server import TrackingServer


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return children + [d for c in children for d in _descendants(c)]


def test_a_server_logs_runs_and_stop_ends_every_process(tmp_path):
    from mlflow import MlflowClient

    server = TrackingServer(tmp_path, {"PATH": os.environ["PATH"]}, tmp_path / "mlflow.log")
    url = server.start("arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-x", str(tmp_path / "artifacts"))
    assert url.startswith("http://127.0.0.1:")
    server.wait_ready()
    processes = [server.process.pid, *_descendants(server.process.pid)]
    assert len(processes) == 2, "mlflow server + uvicorn, and no job-runner/queue consumers (~2 GB unused)"
    client = MlflowClient(url, registry_uri=url)
    experiment = client.create_experiment("e")
    run = client.create_run(experiment, run_name="r")
    client.log_metric(run.info.run_id, "accuracy", 0.75)
    client.log_text(run.info.run_id, "hello", "note.txt")  # proxied to the artifact store
    server.stop()
    for pid in processes:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (tmp_path / "artifacts").rglob("note.txt")

    again = TrackingServer(tmp_path, {"PATH": os.environ["PATH"]}, tmp_path / "mlflow.log")
    url = again.start("arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-x", str(tmp_path / "artifacts"))
    try:
        again.wait_ready()
        # A new stack is a new account: no run of the stack before (its artifacts were in that stack's S3).
        assert MlflowClient(url, registry_uri=url).search_experiments(filter_string="name = 'e'") == []
        with pytest.raises(RuntimeError, match="one MLflow app per stack"):
            again.start("arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-y", str(tmp_path / "other"))
    finally:
        again.stop()


def test_a_server_that_cannot_start_says_where_to_look(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = TrackingServer(tmp_path, {"PATH": os.environ["PATH"]}, tmp_path / "mlflow.log",
                                port=taken.getsockname()[1], startup_timeout=60)
        server.start("arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-x", str(tmp_path / "artifacts"))
        with pytest.raises(RuntimeError, match="mlflow.log"):
            server.wait_ready()
        server.stop()
