"""The child side of the startup benchmark: run a job, note when it first opens its data file.

    python -m bench.startup_probe read MARK DATA validate   # the `validate` console script's call, unchanged
    python -m bench.startup_probe read MARK DATA bare       # the bare baseline: import pandas, read the same CSV
    python -m bench.startup_probe import train|validate|serve|bare

`read`: an audit hook (sys.addaudithook) sees every `open` the interpreter makes; the first one of DATA writes
the wall-clock time and the heavy libraries already imported to MARK (JSON). pandas opens a CSV with Python's
own `open`, so this is the moment the first row starts to be read, with no change to the job.

`import`: what a command imports before it touches data, then the heavy libraries that brought in (JSON on
stdout): for a Kedro job, its entry point, Kedro's session and the pipelines that job registers (as
`KedroSession.run` asks for them); for `serve`, the entry point, uvicorn and the app each worker imports;
`bare`, pandas alone.

Only the standard library is imported here before the job runs: the probe must not warm anything the job
would import.
"""
from __future__ import annotations

import json
import os
import sys
import time

HEAVY = ("pandas", "sklearn", "scipy", "matplotlib", "great_expectations", "shap", "mlflow", "kedro", "uvicorn")


def loaded() -> list[str]:
    return [name for name in HEAVY if name in sys.modules]


def watch(mark: str, data: str) -> None:
    wanted = os.path.realpath(data)
    base = os.path.basename(wanted)
    seen = False

    def hook(event: str, args: tuple) -> None:
        nonlocal seen
        if seen or event != "open" or not args:
            return
        path = args[0]
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # an open of a file descriptor
        path = os.fsdecode(path)
        if not path.endswith(base) or os.path.realpath(path) != wanted:
            return
        seen = True  # before writing MARK: os.open raises this audit event too
        at = time.time()
        fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, json.dumps({"first_read": at, "loaded": loaded()}).encode())
        finally:
            os.close(fd)

    sys.addaudithook(hook)


# The pipelines each job's session runs (entrypoints.py); fixed here so the probe also measures older code.
JOB_PIPELINES = {"train": ["data_processing", "training", "evaluation"], "validate": ["data_validation"]}


def import_only(command: str) -> int:
    if command in JOB_PIPELINES:
        from ml_pipeline import entrypoints

        entrypoints._quiet_environment()  # as the job does before Kedro loads: its logging configuration
        from kedro.framework.project import configure_project, pipelines
        from kedro.framework.session import KedroSession  # noqa: F401

        configure_project("ml_pipeline")
        pipelines.set_requested(JOB_PIPELINES[command])
        for name in JOB_PIPELINES[command]:
            pipelines[name]  # noqa: B018 — the access that imports the pipeline's modules
    elif command == "serve":
        import uvicorn  # noqa: F401

        import ml_pipeline.entrypoints  # noqa: F401
        import ml_pipeline.serving.app  # noqa: F401
        import ml_pipeline.serving.protocol  # noqa: F401
    elif command == "bare":
        import pandas  # noqa: F401
    else:
        raise SystemExit(f"unknown command {command!r}: train, validate, serve or bare")
    print(json.dumps({"loaded": loaded()}), flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["import"]:
        return import_only(argv[1])
    _, mark, data, command = argv
    watch(mark, data)
    if command == "validate":
        from ml_pipeline.entrypoints import validate

        return validate()
    if command == "bare":
        import pandas as pd

        pd.read_csv(data, low_memory=False)  # the call tabular.read_table makes
        return 0
    raise SystemExit(f"unknown command {command!r}: validate or bare")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
