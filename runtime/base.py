"""The one runtime interface: every backend (.tflite via LiteRT, .onnx via onnxruntime, ...) is a `Model`.

A backend only opens the file, describes its input/output tensors and runs one prepared batch
(`_invoke`). Everything a user touches, predict / evaluate / benchmark, lives here once, so every
format behaves the same and one contract test covers them all.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.metadata import spec_of
from edgeport.core.spec import InputSpec


def as_probabilities(y: np.ndarray) -> np.ndarray:
    """Scores (N, classes) as float32 probabilities: rows that already are (a softmax head) stay, logits get a softmax.

    0.02: an int8 softmax comes in steps of 1/256 whether the file's output tensor is int8 or dequantised inside the
    file (float I/O, e.g. web_tflite_int8), so its sum can be off by ~10 half-steps. The reference of an imported
    model goes through the same rule, so files and reference compare like with like."""
    y = np.asarray(y, np.float32).reshape(len(y), -1)
    if y.size and (y.min() < -1e-6 or y.max() > 1 + 1e-6 or np.abs(y.sum(axis=1) - 1).max() > 0.02):
        e = np.exp(y - y.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
    return y


@dataclass(frozen=True)
class TensorSpec:
    """What a model file says about one tensor. `shape` uses -1 for a dynamic dimension."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "float32", "int8", "uint8", ...
    scale: float | None = None  # affine quantisation: real = scale * (q - zero_point)
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.dtype in ("int8", "uint8", "int16")

    def to_dict(self) -> dict:
        return asdict(self) | {"shape": list(self.shape)}


@dataclass
class Evaluation:
    """Accuracy of one model on labelled images, and (optionally) agreement with reference probabilities."""

    accuracy: float
    confusion: np.ndarray  # (classes, classes) counts, rows = true label, columns = prediction
    predictions: np.ndarray  # (N,) top-1 class
    probabilities: np.ndarray  # (N, classes)
    agreement: float | None = None  # fraction of images with the same top-1 as the reference
    max_abs_diff: float | None = None  # largest |p - p_ref| over all images and classes
    mean_abs_diff: float | None = None

    @property
    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(axis=1)
        return [float(self.confusion[i, i] / t) if t else float("nan") for i, t in enumerate(totals)]

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "agreement": self.agreement,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "per_class_accuracy": self.per_class_accuracy,
            "confusion": self.confusion.tolist(),
        }


@dataclass
class BenchResult:
    """Batch-1 latency of one model: load time, first inference, then `runs` timed calls after warm-up."""

    runs: int
    warmup: int
    load_ms: float
    first_ms: float
    samples_ms: list[float] = field(repr=False)

    @property
    def latency_ms(self) -> dict[str, float]:
        """min / mean / std / p50 / p90 / p95 / p99 / max in ms (see runtime/bench.py for the full benchmark)."""
        from edgeport.runtime.bench import latency_stats

        return latency_stats(self.samples_ms)

    def to_dict(self) -> dict:
        return {"runs": self.runs, "warmup": self.warmup, "load_ms": self.load_ms, "first_ms": self.first_ms,
                "latency_ms": self.latency_ms}


class Model(ABC):
    """A loaded model file. Subclasses set `format`, `input`, `output`, `batch_dynamic` and `_invoke`."""

    format: str = ""
    input: TensorSpec
    output: TensorSpec
    batch_dynamic: bool = False  # True when the file accepts any batch size
    metadata: dict  # key/value metadata embedded in the file (may be empty)
    load_ms: float = 0.0

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.metadata = {}

    # --- what a backend implements -----------------------------------------------------------------
    @abstractmethod
    def _invoke(self, x: np.ndarray) -> np.ndarray:
        """Run one batch already in the engine's dtype and layout; return the raw output tensor."""

    def raw_call(self, x: np.ndarray):
        """A no-argument callable running the bare engine on prepared `x` (no edgeport code in between), for
        the benchmark's overhead check; None when a backend has no such call."""
        return None

    # --- shared behaviour --------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} in={self.input.shape}:{self.input.dtype}>"

    @cached_property
    def _spec_and_notes(self) -> tuple[InputSpec, list[str]]:
        spec, notes = spec_of(self.metadata, self.input.shape, self.num_classes, self.path.name)
        if not self.input.quantized and not self.input.dtype.startswith("float") and spec.scale != 1.0 \
                and "input_scale" not in self.metadata:
            spec = spec.replace(scale=1.0)  # an integer input that is not quantised takes raw pixel values
            notes.append(f"{self.path.name} takes {self.input.dtype} input: feeding raw pixel values (0..255)")
        return spec, notes

    @property
    def spec(self) -> InputSpec:
        """What this file takes: its embedded input spec, or one derived from its input tensor (`spec_notes` says
        which defaults were assumed). Raises InputError when the input is not an image."""
        return self._spec_and_notes[0]

    @property
    def spec_notes(self) -> list[str]:
        """Defaults the spec had to assume (no edgeport metadata, labels that do not fit, ...), to say once."""
        return list(self._spec_and_notes[1])

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) the model expects; raises InputError if the input is not an image tensor."""
        return self.spec.height, self.spec.width

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)

    @property
    def num_classes(self) -> int:
        return int(self.output.shape[-1])

    def describe(self) -> dict:
        return {"format": self.format, "inputs": [self.input.to_dict()], "outputs": [self.output.to_dict()],
                "batch_dynamic": self.batch_dynamic}

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Validate images and turn them into the engine's input: scaling, layout and quantisation by the spec.

        Accepts uint8 images (0..255) or float images in [0, 1], shaped (N, H, W, C) or one (H, W, C); grayscale
        also (N, H, W) or (H, W).
        """
        try:
            x = self.spec.normalise(images)
        except InputError as exc:
            raise InputError(f"{self.path.name}: {exc}") from None
        if len(self.input.shape) == 3:  # an (N, H, W) input tensor: grayscale without a channel axis
            x = x[..., 0]
        return self._quantize(x)

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        spec = self.input
        if not spec.quantized:
            return x.astype(spec.dtype if spec.dtype.startswith("float") else np.float32)
        info = np.iinfo(spec.dtype)
        q = np.round(x / spec.scale + spec.zero_point)
        return np.clip(q, info.min, info.max).astype(spec.dtype)

    def _to_probabilities(self, y: np.ndarray) -> np.ndarray:
        spec = self.output
        y = y.reshape(len(y), -1)
        if spec.quantized:
            y = (y.astype(np.float32) - spec.zero_point) * spec.scale
        return as_probabilities(y)

    def predict(self, images, batch_size: int = 256, progress=None) -> np.ndarray:
        """Class probabilities (N, classes); quantised I/O is scaled from the file's own parameters.

        `images` is an array, or any sized sequence whose slices are uint8 batches (a lazy image folder): it is
        prepared `batch_size` images at a time, so a large test set is never all in memory at once."""
        if isinstance(images, np.ndarray):
            try:
                images = self.spec.as_batch(images)
            except InputError as exc:
                raise InputError(f"{self.path.name}: {exc}") from None
        step = batch_size if self.batch_dynamic else 1
        outs = []
        for i in range(0, len(images), batch_size):
            x = self.prepare(images[i : i + batch_size])
            for j in range(0, len(x), step):
                outs.append(self._invoke(x[j : j + step]))
            if progress is not None:
                progress(min(i + batch_size, len(images)))
        if not outs:
            return np.zeros((0, self.num_classes), np.float32)
        return self._to_probabilities(np.concatenate(outs))

    def evaluate(self, images: np.ndarray, labels: np.ndarray, reference: np.ndarray | None = None,
                 progress=None) -> Evaluation:
        """Accuracy and confusion matrix on labelled images; with `reference` probabilities, agreement too."""
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != len(images):
            raise InputError(f"{len(images)} images but {len(labels)} labels")
        probs = self.predict(images, progress=progress)
        pred = probs.argmax(axis=1)
        k = max(self.num_classes, int(labels.max()) + 1 if len(labels) else 0)
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (labels, pred), 1)
        ev = Evaluation(float((pred == labels).mean()) if len(labels) else float("nan"), confusion, pred, probs)
        if reference is not None:
            reference = np.asarray(reference, dtype=np.float32)
            if reference.shape != probs.shape:
                raise InputError(f"reference probabilities {reference.shape} do not match predictions {probs.shape}")
            diff = np.abs(probs - reference)
            ev.agreement = float((reference.argmax(axis=1) == pred).mean())
            ev.max_abs_diff = float(diff.max())
            ev.mean_abs_diff = float(diff.mean())
        return ev

    def benchmark(self, image: np.ndarray | None = None, runs: int = 200, warmup: int = 20) -> BenchResult:
        """Batch-1 latency: first inference, `warmup` untimed calls, then `runs` timed calls of the engine."""
        if runs < 1 or warmup < 0:
            raise InputError(f"benchmark needs runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
        if image is None:
            image = np.random.default_rng(0).integers(0, 256, self.spec.image_shape, dtype=np.uint8)
        x = self.prepare(image)[:1]
        t0 = time.perf_counter()
        self._invoke(x)
        first = (time.perf_counter() - t0) * 1e3
        for _ in range(warmup):
            self._invoke(x)
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self._invoke(x)
            samples.append((time.perf_counter() - t0) * 1e3)
        return BenchResult(runs, warmup, self.load_ms, first, samples)
