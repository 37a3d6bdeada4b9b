"""`make reproduce MODEL=...`: train a registered model again from what was recorded (the exact S3 object versions
of its data, its hyperparameters and seed, its champion) with the production image, and say whether the result is
the same model: every metric equal, and every prediction equal on every row it was trained and tested on."""

from __future__ import annotations

import json
import math
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench import experiment
from workbench.container import LocalRun
from workbench.records import Stack, TrainingRecord, download_object, job_of, training_record


@dataclass
class Verdict:
    training_job: str
    package_arn: str | None
    recorded_image: str
    image: str
    reproduced_job: str
    rows_compared: int
    metrics_compared: int
    metric_differences: list[dict] = field(default_factory=list)
    prediction_differences: int = 0
    probability_max_abs_difference: float | None = None
    identical: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        what = self.package_arn or self.training_job
        if self.identical:
            return (f"REPRODUCED {what}: {self.metrics_compared} metrics identical, predictions identical on all "
                    f"{self.rows_compared} recorded rows (training job {self.training_job}, image {self.image})")
        return (f"NOT REPRODUCED {what}: {len(self.metric_differences)} metric(s) differ, "
                f"{self.prediction_differences} of {self.rows_compared} predictions differ "
                f"(largest probability difference {self.probability_max_abs_difference})")


def flat_metrics(metadata: dict) -> dict[str, float]:
    """Every number the run reported: test/validation metrics and the paired comparison, by dotted name."""
    found: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[prefix] = float(value)

    walk("metrics", metadata.get("metrics") or {})
    walk("comparison", metadata.get("comparison") or {})
    return found


def metric_differences(original: dict[str, float], again: dict[str, float]) -> list[dict]:
    """Names whose values are not identical (NaN equals NaN), or that only one side has."""
    differences = []
    for name in sorted(set(original) | set(again)):
        a, b = original.get(name), again.get(name)
        same = a is not None and b is not None and (a == b or (math.isnan(a) and math.isnan(b)))
        if not same:
            differences.append({"metric": name, "recorded": a, "reproduced": b})
    return differences


def compare_predictions(original_dir: Path, again_dir: Path, data_dir: Path) -> tuple[int, int, float | None]:
    """(rows, rows whose label differs, largest |probability difference|) of the two models on every row of the
    recorded data (the test split is a subset of these rows)."""
    import numpy as np

    from ml_pipeline import schema, tabular
    from ml_pipeline.pipelines.data_processing.nodes import clean_data
    from ml_pipeline.serving.predictor import load_model_files

    first, metadata = load_model_files(original_dir)
    second, _ = load_model_files(again_dir)
    cleaned, _ = clean_data(tabular.read_path(str(data_dir)), metadata["target"])
    rows = schema.coerce_features(cleaned, metadata["features"])  # the model's input, as training built it
    labels_first, labels_second = first.predict(rows), second.predict(rows)
    differing = int(np.sum(np.asarray(labels_first) != np.asarray(labels_second)))
    largest = None
    if hasattr(first, "predict_proba"):
        largest = float(np.max(np.abs(first.predict_proba(rows) - second.predict_proba(rows)))) if len(rows) else 0.0
    return len(rows), differing, largest


def _extract(archive: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def reproduce(stack: Stack, model: str, image: str, workdir: Path) -> Verdict:
    job, package_arn = job_of(stack, model)
    record: TrainingRecord = training_record(stack, job, package_arn)
    if not record.model_data_url:
        raise experiment.ExperimentError(f"training job {job} records no model artifact to compare with")
    plan = experiment.plan_from_record(stack, record, image, f"reproduce-{job}"[:40].rstrip("-") + "-run", workdir,
                                       overrides={})
    result: LocalRun = experiment.run(plan, workdir)
    original = _extract(download_object(stack, record.model_data_url, workdir / "recorded"), workdir / "recorded-model")
    recorded_metadata = json.loads((original / "metadata.json").read_text())
    again_metadata = json.loads((result.model_dir / "metadata.json").read_text())
    recorded, again = flat_metrics(recorded_metadata), flat_metrics(again_metadata)
    differences = metric_differences(recorded, again)
    rows, differing, largest = compare_predictions(original, result.model_dir, plan.channels["train"])
    notes = list(plan.notes)
    if record.image != image:
        notes.append(f"ran image {image}; the job recorded {record.image}")
    verdict = Verdict(training_job=job, package_arn=package_arn, recorded_image=record.image, image=image,
                      reproduced_job=result.job, rows_compared=rows, metrics_compared=len(recorded),
                      metric_differences=differences, prediction_differences=differing,
                      probability_max_abs_difference=largest, notes=notes)
    verdict.identical = not differences and differing == 0 and (largest in (None, 0.0)) and rows > 0
    (workdir / "reproduction.json").write_text(json.dumps(asdict(verdict), indent=1) + "\n")
    return verdict
