"""The files under .local/ (local.statefiles): state.json, outputs.json, sns.log, the status environment."""

import json
import os
import stat

from local.statefiles import SnsLog, read_state, remove_state, status_environment, write_outputs, write_state


def test_state_is_private_and_read_only_while_its_process_lives(tmp_path):
    write_state(tmp_path / "state.json", {"pid": os.getpid(), "aws_url": "http://127.0.0.1:1", "region": "eu-west-1"})
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600  # it holds the control token
    assert read_state(tmp_path)["aws_url"] == "http://127.0.0.1:1"
    write_state(tmp_path / "state.json", {"pid": 2 ** 22 + 12345})  # a process that is gone
    assert read_state(tmp_path) is None
    write_state(tmp_path / "state.json", {"pid": os.getpid()})
    remove_state(tmp_path)
    assert not (tmp_path / "state.json").exists() and read_state(tmp_path) is None


def test_outputs_have_the_cdk_outputs_file_shape_plus_the_local_urls(tmp_path):
    outputs = {"Storage": {"DataBucketName": "d"}, "Serving": {}}
    write_outputs(tmp_path / "outputs.json", outputs, {"AwsEndpointUrl": "http://a", "Region": "eu-west-1"},
                  {"DATA_BUCKET": "ignored", "ENDPOINT_NAME": "p-endpoint"})
    written = json.loads((tmp_path / "outputs.json").read_text())
    assert written == {"Storage": {"DataBucketName": "d", "AwsEndpointUrl": "http://a", "Region": "eu-west-1",
                                   "EndpointName": "p-endpoint"},
                       "Serving": {"AwsEndpointUrl": "http://a", "Region": "eu-west-1"}}


def test_status_environment_points_at_the_stack_with_the_triggers_variables(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "someone")
    env = status_environment({"aws_url": "http://127.0.0.1:9", "region": "eu-west-1", "functions": {
        "handlers.trigger.handler": {"environment": {"LEDGER_TABLE": "t"}}}})
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9" and env["LEDGER_TABLE"] == "t"
    assert "AWS_PROFILE" not in env and env["PYTHONPATH"].endswith("lambda")


def test_sns_log_appends_one_json_line_per_message(tmp_path):
    log = SnsLog(tmp_path / "sns.log")
    log("arn:t", "m1", "s1")
    log("arn:t", "m2", None)
    lines = [json.loads(line) for line in (tmp_path / "sns.log").read_text().splitlines()]
    assert [(e["topic"], e["message"], e["subject"]) for e in lines] == [("arn:t", "m1", "s1"), ("arn:t", "m2", None)]
