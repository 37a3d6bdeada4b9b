"""``python -m workbench {train,reproduce}``: the data scientist's commands (docs/experimenting.md).

  train       the production image's `train` in a local container (SageMaker SDK v3 ModelTrainer), on a recorded
              run's data (--from-job JOB|latest) or your own (--data PATH --target COLUMN), hyperparameters changed
              with --set key=value; the run goes to the stack's MLflow (tag gate=experiment).
  reproduce   train a registered model again from its recorded inputs and report whether it is the same model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from workbench import experiment
from workbench.container import ContainerError, job_name
from workbench.records import RecordError, Stack

DEFAULT_WORKDIR = Path(".local/workbench")


def _image(args: argparse.Namespace) -> str:
    image = args.image or os.environ.get("MLOPS_IMAGE")
    if not image:
        raise experiment.ExperimentError('name the image: --image TAG or MLOPS_IMAGE (export MLOPS_IMAGE="$(bash '
                                         'scripts/build_image.sh)"; on AWS, the stack output ImageUri)')
    return image


def _stack(args: argparse.Namespace, required: bool) -> Stack | None:
    try:
        return Stack.load(Path(args.outputs) if args.outputs else None)
    except RecordError:
        if required:
            raise
        return None


def cmd_train(args: argparse.Namespace) -> int:
    image = _image(args)
    overrides = experiment.parse_overrides(args.set or [])
    name = job_name(args.name)
    workdir = Path(args.workdir) / name
    if args.data:
        stack = _stack(args, required=False)
        plan = experiment.plan_from_files(Path(args.data), image, name, workdir, args.target, overrides)
    else:
        stack = _stack(args, required=True)
        record = experiment.resolve_record(stack, args.from_job)
        plan = experiment.plan_from_record(stack, record, image, name, workdir, overrides)
    for note in plan.notes:
        print(f"workbench: {note}")
    result = experiment.run(plan, workdir)
    metadata = json.loads((result.model_dir / "metadata.json").read_text())
    test = (metadata.get("metrics") or {}).get("test") or {}
    print(f"workbench: {name}: model in {result.model_dir}, report {result.model_dir / 'report' / 'index.html'}")
    print("workbench: test " + ", ".join(f"{k}={v:.4f}" for k, v in test.items() if isinstance(v, (int, float))))
    target = None if args.no_track else experiment.tracking_target(stack, args.tracking_uri, args.experiment)
    if target is None:
        print("workbench: not logged to MLflow (no tracking URI: the stack has none, or --no-track)")
        return 0
    logged = experiment.log_run(result, *target, note="; ".join(plan.notes),
                                data_fingerprint=plan.record.fingerprint if plan.record else None)
    print(f"workbench: MLflow run {logged['run_id']} in experiment {target[1]!r} at {target[0]}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from workbench.reproduce import reproduce

    stack = _stack(args, required=True)
    name = job_name("reproduce")
    workdir = Path(args.workdir) / name
    verdict = reproduce(stack, args.model, _image(args), workdir)
    for note in verdict.notes:
        print(f"workbench: {note}")
    for difference in verdict.metric_differences[:20]:
        print(f"workbench: differs: {difference['metric']}: recorded {difference['recorded']}, "
              f"reproduced {difference['reproduced']}")
    print(f"workbench: {verdict.summary()}")
    print(f"workbench: details in {workdir / 'reproduction.json'}")
    return 0 if verdict.identical else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", help="stack outputs file (default: .local/outputs.json, else cdk-outputs.json)")
    parser.add_argument("--image", help="the image to run (default: MLOPS_IMAGE)")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="where runs are laid out (%(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train the production image locally and log the run to MLflow")
    source = train.add_mutually_exclusive_group()
    source.add_argument("--from-job", default="latest",
                        help="reuse a training job's data (exact S3 versions), champion and hyperparameters "
                             "(default: the newest completed job)")
    source.add_argument("--data", help="your own CSV/Parquet file or directory instead")
    train.add_argument("--target", help="the label column (with --data)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="a hyperparameter (repeatable)")
    train.add_argument("--name", default="experiment", help="run name prefix (%(default)s)")
    train.add_argument("--tracking-uri", help="MLflow tracking URI (default: the stack's)")
    train.add_argument("--experiment", help="MLflow experiment (default: the stack's, next to production's runs)")
    train.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    again = commands.add_parser("reproduce", help="train a registered model again and compare")
    again.add_argument("model", help="model package ARN, package version number, or training job name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        return cmd_train(args) if args.command == "train" else cmd_reproduce(args)
    except (experiment.ExperimentError, RecordError, ContainerError) as exc:
        print(f"workbench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
