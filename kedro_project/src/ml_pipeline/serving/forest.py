"""The fitted HistGradientBoosting trees compiled to C: Treelite imports them, TL2cgen generates and compiles the code.

Training compiles (`compile_forest`, in the thread the `compile_model` node starts) and ships `forest/forest.so` +
`forest/forest.json` in the model directory; `serve` loads it (`Forest.load`) when the record says it was built on
this platform for these very trees, and `CompiledModel` keeps it only if it reproduces the estimator on probe rows.
Otherwise the estimator's own `predict` serves (slower, same numbers).

Exactness. TL2cgen adds the trees' leaves in order and the base score last; scikit-learn starts from the base score.
Folding each output's base score into the leaves of its first tree (base + leaf: scikit-learn's very first addition)
and setting the base score to 0 makes the raw scores bit-identical. The link (sigmoid, softmax) is applied here as
scikit-learn's loss applies it (scipy's expit; softmax's numpy steps), not by TL2cgen's C versions, for the same reason.

TL2cgen's input entry is a C union of the value and a "missing" int (-1) sharing the low 32 bits, so a present value
whose low 32 bits are all ones is read as missing (about 1 value in 4 billion). `Forest` sends rows holding such a
value to the estimator.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as distributions
from pathlib import Path

import numpy as np
from kedro.io import AbstractDataset

log = logging.getLogger(__name__)

DIRECTORY = "forest"  # inside the model directory
LIBRARY = "forest.so"
RECORD = "forest.json"
FORMAT_VERSION = 1
TREES_PER_SOURCE_FILE = 25  # gcc's time grows faster than linearly with the size of one file: split, compile in parallel
CHUNK_ROWS = 1024  # a large batch is predicted chunk by chunk, so a borrowed core goes back within one chunk
_LOW_WORD = np.uint64(0xFFFFFFFF)
_FLOAT64 = ctypes.c_char_p(b"float64")
_MISSING = np.array([np.nan])  # TL2cgen's DMatrix: this value means missing
_MISSING_POINTER = ctypes.c_void_p(_MISSING.ctypes.data)
_ALL_ONES = b"\xff\xff\xff\xff"
# One row's labels are decided from the raw scores when the top score leads every earlier class's by more than
# this: then no exp() within a million ulps of the true value can make their probabilities equal (label_from_raw).
_LABEL_MARGIN = 1e-9
# What the compiled library depends on. A difference means another image built it: it is not loaded.
_PACKAGES = ("treelite", "tl2cgen", "scikit-learn", "numpy")


def platform_record() -> dict:
    libc, libc_version = platform.libc_ver()
    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "libc": f"{libc} {libc_version}".strip(),
        "python": sys.implementation.cache_tag,
        **{name: distributions.version(name) for name in _PACKAGES},
    }


def link_of(estimator) -> str | None:
    """How raw scores become predictions, from public parameters; None for a loss this module does not reproduce."""
    if hasattr(estimator, "classes_"):
        if estimator.loss != "log_loss":
            return None
        return "logistic" if len(estimator.classes_) == 2 else "softmax"
    return "identity" if estimator.loss == "squared_error" else None


def treelite_model(estimator):
    """Treelite's import of the estimator, with each output's base score folded into its first tree."""
    import treelite

    model = treelite.sklearn.import_model(estimator)
    header = model.get_header_accessor()
    base = np.asarray(header.get_field("base_scores"), dtype=np.float64).reshape(-1)
    class_ids = np.asarray(header.get_field("class_id")).reshape(-1)
    folded: set[int] = set()
    for tree_id in range(model.num_tree):
        output = max(int(class_ids[tree_id]), 0)  # -1: the tree feeds every output (one-output models)
        if output in folded:
            continue
        tree = model.get_tree_accessor(tree_id)
        values = np.asarray(tree.get_field("leaf_value"), dtype=np.float64).copy()
        leaves = np.asarray(tree.get_field("cleft")) == -1
        values[leaves] = base[output] + values[leaves]
        tree.set_field("leaf_value", values)
        folded.add(output)
        if len(folded) == base.size:
            break
    if len(folded) != base.size:
        raise ValueError(f"{base.size} base scores but trees for {len(folded)} outputs")
    header.set_field("base_scores", np.zeros_like(base))
    return model


def trees_digest(model) -> str:
    """What the library was compiled from: a library whose record names other trees is stale."""
    return hashlib.sha256(model.serialize_bytes()).hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiler() -> str | None:
    for name in ("gcc", "cc", "clang"):
        if shutil.which(name):
            return name
    return None


@dataclass
class CompiledForest:
    """The library's bytes (None when it could not be built) and its record (forest.json)."""

    library: bytes | None
    record: dict


def compile_forest(estimator, jobs: int | None = None) -> CompiledForest:
    """Compile the estimator's trees; never raises: a model that cannot be compiled is served by the estimator."""
    started = time.perf_counter()
    link = link_of(estimator)
    toolchain = compiler()
    try:
        if link is None:
            raise ValueError(f"loss {estimator.loss!r} is not reproduced")
        if toolchain is None:
            raise RuntimeError("no C compiler (gcc, cc or clang) on PATH")
        import tl2cgen

        model = treelite_model(estimator)
        jobs = jobs or max(1, len(os.sched_getaffinity(0)))
        with tempfile.TemporaryDirectory(prefix="forest-") as scratch:
            library = Path(scratch) / LIBRARY
            tl2cgen.export_lib(model, toolchain=toolchain, libpath=str(library), nthread=jobs,
                               params={"parallel_comp": max(jobs, math.ceil(model.num_tree / TREES_PER_SOURCE_FILE))})
            content = library.read_bytes()
    except Exception as exc:  # noqa: BLE001 — the model is still good; serve says why it is not compiled
        return not_compiled(exc)
    record = {
        "format_version": FORMAT_VERSION,
        "compiled": True,
        "platform": platform_record(),
        "link": link,
        "outputs": int(estimator.n_trees_per_iteration_),
        "trees": int(model.num_tree),
        "trees_sha256": trees_digest(model),
        "library_sha256": hashlib.sha256(content).hexdigest(),
        "compiler": toolchain,
        "compile_seconds": round(time.perf_counter() - started, 3),
    }
    log.info("compiled %d trees with %s in %.1f s (%d KB)", model.num_tree, toolchain, record["compile_seconds"],
             len(content) // 1024)
    return CompiledForest(content, record)


def not_compiled(exc: BaseException) -> CompiledForest:
    """No library, and a record saying why: serve predicts with the estimator."""
    record = {"format_version": FORMAT_VERSION, "compiled": False, "platform": platform_record(),
              "reason": f"{type(exc).__name__}: {exc}"}
    log.warning("trees not compiled (%s): serve will predict with the estimator", record["reason"])
    return CompiledForest(None, record)


class ForestBuild:
    """`compile_forest` in a background thread: the compiler's processes run beside what the caller does next (the
    evaluation nodes, one thread each) instead of before it. `result()` waits; it never raises either."""

    def __init__(self, estimator, jobs: int | None = None) -> None:
        self._compiled: CompiledForest | None = None
        self._thread = threading.Thread(target=self._compile, args=(estimator, jobs), name="compile-forest",
                                        daemon=True)
        self._thread.start()

    def _compile(self, estimator, jobs: int | None) -> None:
        try:
            self._compiled = compile_forest(estimator, jobs)
        except BaseException as exc:  # noqa: BLE001 — what compile_forest lets through (MemoryError, ...): the run
            # still gets its model, served by the estimator
            self._compiled = not_compiled(exc)

    def result(self) -> CompiledForest:
        self._thread.join()
        assert self._compiled is not None
        return self._compiled


class CompiledForestDataset(AbstractDataset):
    """`forest/` of the model directory: forest.so (absent when not compiled) and forest.json."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def _save(self, data: CompiledForest) -> None:
        self._path.mkdir(parents=True, exist_ok=True)
        library = self._path / LIBRARY
        if data.library is None:
            library.unlink(missing_ok=True)  # never leave another model's library next to this record
        else:
            library.write_bytes(data.library)
        (self._path / RECORD).write_text(json.dumps(data.record, indent=1, sort_keys=True), encoding="utf-8")

    def _load(self) -> CompiledForest:
        record = json.loads((self._path / RECORD).read_text(encoding="utf-8"))
        library = self._path / LIBRARY
        return CompiledForest(library.read_bytes() if library.is_file() else None, record)

    def _exists(self) -> bool:
        return (self._path / RECORD).is_file()

    def _describe(self) -> dict:
        return {"path": str(self._path)}


class Forest:
    """The compiled library, shaped like the estimator: `predict_proba` / `predict` on preprocessed rows."""

    def __init__(self, library: Path, record: dict, estimator) -> None:
        self.library = library
        self.link = record["link"]
        self.outputs = int(record["outputs"])
        self.estimator = estimator
        self._local = threading.local()  # TL2cgen: one thread at a time per Predictor, so one Predictor per thread
        self._helpers = None
        self._helper_count = 0
        self._feature_count = self._predictor().num_feature  # a library that does not load fails here, at load time
        self._row_predict = self._row_function()
        self._zeros = array("d", bytes(8 * max(self.outputs, 1)))

    @classmethod
    def load(cls, model_dir: Path, estimator) -> tuple[Forest | None, str]:
        """(the forest, "") or (None, why it is not used): missing, not compiled, another platform, stale."""
        directory = Path(model_dir) / DIRECTORY
        try:
            record = json.loads((directory / RECORD).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, f"no {DIRECTORY}/{RECORD} in the model directory"
        except (OSError, ValueError) as exc:
            return None, f"{DIRECTORY}/{RECORD} is unreadable ({exc})"
        if record.get("format_version") != FORMAT_VERSION:
            return None, f"{DIRECTORY}/{RECORD} has format {record.get('format_version')!r}, not {FORMAT_VERSION}"
        if not record.get("compiled"):
            return None, f"training did not compile the trees ({record.get('reason', 'no reason recorded')})"
        here, there = platform_record(), record.get("platform") or {}
        differ = sorted(k for k in here.keys() | there.keys() if here.get(k) != there.get(k))
        if differ:
            return None, ("compiled on another platform: " +
                          ", ".join(f"{k} {there.get(k)!r} there, {here.get(k)!r} here" for k in differ))
        library = directory / LIBRARY
        if not library.is_file():
            return None, f"{DIRECTORY}/{LIBRARY} is missing"
        if _file_sha256(library) != record.get("library_sha256"):
            return None, f"{DIRECTORY}/{LIBRARY} is not the library its record describes (stale or altered)"
        if link_of(estimator) != record.get("link"):
            return None, f"compiled for a {record.get('link')} link, the estimator has {link_of(estimator)}"
        if trees_digest(treelite_model(estimator)) != record.get("trees_sha256"):
            return None, "compiled from other trees than model.joblib's (stale)"
        return cls(library, record, estimator), ""

    def _predictor(self):
        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            import tl2cgen

            predictor = tl2cgen.Predictor(self.library, nthread=1)
            shape = (predictor.num_target, *predictor.num_class.tolist(), predictor.leaf_output_type)
            if shape != (1, max(self.outputs, 1), "float64"):
                raise ValueError(f"the library predicts (targets, classes, type) {shape}, not (1, {self.outputs}, "
                                 "float64)")
            self._local.predictor = predictor
        return predictor

    def _row_function(self):
        """The generated code's own entry point, `void predict(union Entry* data, int pred_margin, double* result)`.

        TL2cgen's runtime calls it once per row after copying the row into Entry unions; a row that is already
        an array of doubles with no missing value has exactly that layout, so one ctypes call predicts it (≈ 1.5 µs
        against ≈ 10 µs through DMatrix, batch prediction and numpy; the single-row path of every request).
        """
        library = ctypes.CDLL(str(self.library))  # the handle TL2cgen's Predictor already opened
        function = library.predict
        function.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        function.restype = None
        self._row_library = library  # keeps the handle open as long as the function may be called
        return function

    def row_raw(self, features: array) -> array | None:
        """One row's raw scores (or None: a value TL2cgen would read as missing; `predict_proba` handles it).

        `features` are the row's doubles with no missing value: serve's preprocessing imputes every column.
        """
        if len(features) != self._feature_count:
            raise ValueError(f"{len(features)} features, the library was compiled for {self._feature_count}")
        if features.tobytes().find(_ALL_ONES) >= 0 and self._has_missing_word(features):
            return None
        raw = array("d", self._zeros)  # the generated code adds to what is there
        self._row_predict(features.buffer_info()[0], 1, raw.buffer_info()[0])
        return raw

    @staticmethod
    def _has_missing_word(entries: array) -> bool:
        words = np.frombuffer(entries, dtype=np.float64).view(np.uint64)
        return bool(((words & _LOW_WORD) == _LOW_WORD).any())

    def row_proba(self, features: array) -> np.ndarray | None:
        """One row's probabilities, the very numbers `predict_proba` gives it; None as `row_raw`."""
        raw = self.row_raw(features)
        if raw is None:
            return None
        if self.link == "logistic":
            from scipy.special import expit

            positive = expit(raw[0])
            return np.array([1 - positive, positive])
        return self.predict_proba_raw(np.array([raw]))[0]

    def row_label(self, features: array) -> int | None:
        """The index of one row's class, as argmax of `predict_proba` picks it; None as `row_raw`."""
        raw = self.row_raw(features)
        return None if raw is None else self.label_from_raw(raw)

    def label_from_raw(self, raw) -> int:
        """The index argmax of one row's `predict_proba` gives (the first maximum), from its raw scores.

        Softmax costs ≈ 6 µs in numpy for one row, and the order of the raw scores is the order of the probabilities
        except where rounding makes two probabilities equal. So the probabilities are computed only when an earlier
        class's score is within _LABEL_MARGIN of the top one: otherwise that class's exp() is below 1 - 1e-9 while
        the top's is exp(0) = 1, so after the same division its probability is strictly smaller, and a later class
        can at most tie, which the first maximum wins anyway.
        """
        if self.link == "logistic":
            from scipy.special import expit

            positive = expit(raw[0])
            return 1 if positive > 1 - positive else 0
        top = max(range(len(raw)), key=raw.__getitem__)  # the first maximum
        if all(raw[top] - raw[k] > _LABEL_MARGIN for k in range(top)):
            return top
        return int(np.argmax(self.predict_proba_raw(np.array([raw], dtype=np.float64))[0]))

    def _raw(self, x: np.ndarray) -> np.ndarray:
        """Raw scores through TL2cgen's C API: DMatrix from the array, batch prediction of margins, free.

        The same three calls `tl2cgen.Predictor.predict(tl2cgen.DMatrix(x), pred_margin=True)` makes, without its
        Python checks and copies: ≈ 5 µs instead of ≈ 14 µs for one row, a sixth of what serving a row costs.
        """
        predictor = self._predictor()
        if x.shape[1] != predictor.num_feature:  # the generated code reads the model's features unchecked
            raise ValueError(f"{x.shape[1]} features, the library was compiled for {predictor.num_feature}")
        from tl2cgen.libloader import _LIB, _check_call

        raw = np.zeros((x.shape[0], self.outputs), dtype=np.float64)  # the runtime adds to what is there
        matrix = ctypes.c_void_p()
        _check_call(_LIB.TL2cgenDMatrixCreateFromMat(
            ctypes.c_void_p(x.ctypes.data), _FLOAT64, ctypes.c_size_t(x.shape[0]), ctypes.c_size_t(x.shape[1]),
            _MISSING_POINTER, ctypes.byref(matrix)))
        try:
            _check_call(_LIB.TL2cgenPredictorPredictBatch(predictor.handle, matrix, ctypes.c_int(0), ctypes.c_int(1),
                                                          ctypes.c_void_p(raw.ctypes.data)))
        finally:
            _check_call(_LIB.TL2cgenDMatrixFree(matrix))
        return raw

    def raw(self, x: np.ndarray, threads: Callable[[], int] | None = None) -> np.ndarray:
        """Raw scores; with `threads`, chunks are also predicted on helper threads while `threads()` allows it."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if threads is None or x.shape[0] <= CHUNK_ROWS:
            return self._raw(x)
        return self._chunked(x, threads)

    def _chunked(self, x: np.ndarray, threads: Callable[[], int]) -> np.ndarray:
        """This thread takes chunks until none is left; helper k takes the next one only while threads() > k.

        The C call releases the GIL, so helpers run on the cores idle workers lend (serving/cores.py) and give a core
        back within one chunk (≈ 1-2 ms) when its worker starts computing.
        """
        raw = np.empty((x.shape[0], self.outputs), dtype=np.float64)
        starts = iter(range(0, x.shape[0], CHUNK_ROWS))
        lock = threading.Lock()

        def work(rank: int) -> None:
            while rank == 0 or threads() > rank:
                with lock:
                    start = next(starts, None)
                if start is None:
                    return
                raw[start:start + CHUNK_ROWS] = self._raw(x[start:start + CHUNK_ROWS])

        wanted = threads() - 1
        helpers = [self._helper_pool(wanted).submit(work, rank) for rank in range(1, wanted + 1)] if wanted > 0 else []
        work(0)
        for helper in helpers:
            helper.result()
        return raw

    def _helper_pool(self, size: int):
        from concurrent.futures import ThreadPoolExecutor

        if self._helpers is None or self._helper_count < size:
            self._helpers = ThreadPoolExecutor(max_workers=size, thread_name_prefix="forest-helper")
            self._helper_count = size
        return self._helpers

    def _exact(self, x: np.ndarray, result: np.ndarray, method: str) -> np.ndarray:
        """Rows with a value TL2cgen would read as missing, predicted by the estimator instead."""
        suspect = (x.view(np.uint64) & _LOW_WORD) == _LOW_WORD
        if suspect.any():  # NaN's usual bits have a zero low word: the NaN test only when something matched
            rows = (suspect & ~np.isnan(x)).any(axis=1)
            if rows.any():
                result[rows] = getattr(self.estimator, method)(x[rows])
        return result

    def predict_proba(self, x: np.ndarray, threads: Callable[[], int] | None = None) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        return self._exact(x, self.predict_proba_raw(self.raw(x, threads)), "predict_proba")

    def predict_proba_raw(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities from raw scores (rows × outputs, a float64 array the call may overwrite)."""
        if self.link == "logistic":  # scikit-learn's HalfBinomialLoss.predict_proba, step by step
            from scipy.special import expit

            proba = np.empty((raw.shape[0], 2), dtype=raw.dtype)
            proba[:, 1] = expit(raw[:, 0])
            proba[:, 0] = 1 - proba[:, 1]
            return proba
        # sklearn.utils.extmath.softmax's numpy steps, in its order: the function itself spends most of a
        # one-row call choosing an array namespace (≈ 8 µs, a sixth of a request). The probe rows check it.
        raw -= np.max(raw, axis=1).reshape((-1, 1))
        np.exp(raw, out=raw)
        raw /= np.sum(raw, axis=1).reshape((-1, 1))
        return raw

    def predict(self, x: np.ndarray, threads: Callable[[], int] | None = None) -> np.ndarray:
        """Regression only (identity link); classification labels come from `predict_proba`."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        prediction = self.raw(x, threads)[:, 0].copy()
        return self._exact(x, prediction, "predict")
