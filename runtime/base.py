"""The one runtime interface: every backend (.tflite via LiteRT, .onnx via onnxruntime, ...) is a `Model`.

A backend only opens the file, describes its input/output tensors and runs one prepared batch
(`_invoke`). Everything a user touches, predict / evaluate / benchmark, lives here once, so every
format behaves the same and one contract test covers them all.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeport.core.errors import InputError


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

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) the model expects; raises InputError if the input is not an image tensor."""
        shape = self.input.shape
        if len(shape) == 4 and shape[-1] in (1, -1):  # NHWC
            return shape[1], shape[2]
        if len(shape) == 4 and shape[1] == 1:  # NCHW (PyTorch-exported ONNX)
            return shape[2], shape[3]
        if len(shape) == 3:  # NHW
            return shape[1], shape[2]
        raise InputError(f"{self.path.name}: input {self.input.name} has shape {shape}, not an image (N,H,W[,1])")

    @property
    def num_classes(self) -> int:
        return int(self.output.shape[-1])

    def describe(self) -> dict:
        return {"format": self.format, "inputs": [self.input.to_dict()], "outputs": [self.output.to_dict()],
                "batch_dynamic": self.batch_dynamic}

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Validate images and turn them into the engine's input: layout, scaling and quantisation.

        Accepts uint8 images (0..255) or float images in [0, 1], shaped (H, W), (N, H, W) or (N, H, W, 1).
        """
        x = np.asarray(images)
        h, w = self.image_shape
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 3 or (h > 0 and x.shape[1] != h) or (w > 0 and x.shape[2] != w):
            raise InputError(
                f"{self.path.name}: expected images of shape (N, {h}, {w}) or (N, {h}, {w}, 1), "
                f"got {np.asarray(images).shape}"
            )
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        elif x.dtype in (np.float32, np.float64, np.float16):
            x = x.astype(np.float32)
            if x.size and (not np.isfinite(x).all() or x.min() < -1e-6 or x.max() > 1 + 1e-6):
                raise InputError(
                    f"{self.path.name}: float images must be in [0, 1] and finite (got {x.min():.3g}..{x.max():.3g}); "
                    "pass uint8 0..255 images instead"
                )
        else:
            raise InputError(f"{self.path.name}: expected uint8 or float images, got dtype {x.dtype}")
        mean, std = self.normalization
        x = (x - mean) / std
        shape = self.input.shape
        if len(shape) == 4 and shape[-1] in (1, -1):
            x = x[..., None]
        elif len(shape) == 4:
            x = x[:, None]
        return self._quantize(x)

    @property
    def normalization(self) -> tuple[float, float]:
        """(mean, std) applied after scaling to [0, 1]; read from the file's metadata when present."""
        try:
            return float(self.metadata.get("norm_mean", 0.0)), float(self.metadata.get("norm_std", 1.0))
        except (TypeError, ValueError):
            return 0.0, 1.0

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
        y = y.astype(np.float32)
        # Files that end in softmax already give probabilities; a logits head (files we did not write) gets one.
        # 0.02: an int8 softmax comes in steps of 1/256 whether the file's output tensor is int8 or dequantised
        # inside the file (float I/O, e.g. web_tflite_int8), so its sum can be off by ~10 half-steps.
        if y.min() < -1e-6 or y.max() > 1 + 1e-6 or np.abs(y.sum(axis=1) - 1).max() > 0.02:
            e = np.exp(y - y.max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
        return y

    def predict(self, images: np.ndarray, batch_size: int = 256, progress=None) -> np.ndarray:
        """Class probabilities (N, classes) for images; quantised I/O is scaled from the file's own parameters."""
        x = self.prepare(images)
        step = batch_size if self.batch_dynamic else 1
        outs = []
        for i in range(0, len(x), step):
            outs.append(self._invoke(x[i : i + step]))
            if progress is not None:
                progress(min(i + step, len(x)))
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
            h, w = self.image_shape
            image = np.random.default_rng(0).integers(0, 256, (max(h, 1), max(w, 1)), dtype=np.uint8)
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
