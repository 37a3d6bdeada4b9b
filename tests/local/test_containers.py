"""How the image's commands run here (local.containers): console scripts as processes, time limits."""

import sys
from pathlib import Path

import pytest

from local.containers import ContainerRuntime, entrypoint_command, run_to_completion

COMMANDS = ("train", "serve", "validate", "monitor", "join-labels", "track")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_image_command_is_a_console_script_of_this_virtualenv(name, monkeypatch):
    """The one entry mechanism: kedro_project's [project.scripts], installed with the package (make install)."""
    monkeypatch.delenv("LOCAL_ENTRYPOINT_DIR", raising=False)
    command = entrypoint_command(name)
    assert command == [str(Path(sys.executable).parent / name)], (
        f"{name} is not a console script of {sys.executable}: reinstall kedro_project (`make install`)")


def test_the_test_override_directory_comes_first(tmp_path, monkeypatch):
    (tmp_path / "train").write_text("print('stub')")
    monkeypatch.setenv("LOCAL_ENTRYPOINT_DIR", str(tmp_path))
    assert entrypoint_command("train") == [sys.executable, str(tmp_path / "train")]
    with pytest.raises(FileNotFoundError, match="make install"):
        entrypoint_command("no-such-command")


def test_a_job_past_its_time_limit_is_terminated(tmp_path, monkeypatch):
    (tmp_path / "slow").write_text("import time; time.sleep(30)")
    monkeypatch.setenv("LOCAL_ENTRYPOINT_DIR", str(tmp_path))
    started = []
    rc, timed_out = run_to_completion(ContainerRuntime("process"), "j", tmp_path, ["slow"], {"X": "1"},
                                      {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "k"}, True, 1,
                                      tmp_path / "logs" / "j.log", on_start=started.append)
    assert timed_out and rc != 0 and started and started[0].poll() is not None


def test_network_isolation_takes_the_aws_api_away_from_a_process(tmp_path, monkeypatch):
    (tmp_path / "env").write_text("import os; print(sorted(k for k in os.environ if k.startswith(('AWS', 'X', 'OPT'))))")
    monkeypatch.setenv("LOCAL_ENTRYPOINT_DIR", str(tmp_path))
    base = {"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": "http://x", "AWS_ACCESS_KEY_ID": "k", "AWS_REGION": "r"}
    rc, _ = run_to_completion(ContainerRuntime("process"), "j", tmp_path, ["env"], {"X": "1"}, base, True, 30,
                              tmp_path / "j.log")
    assert rc == 0 and (tmp_path / "j.log").read_text().strip() == "['AWS_REGION', 'OPT_ML_ROOT', 'X']"


def test_without_an_image_commands_run_as_processes():
    assert ContainerRuntime.detect(image="").mode == "process"
