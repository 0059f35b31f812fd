"""TF-free runtime: load any exported .tflite / .onnx file and predict, evaluate or benchmark it.

    from edgeport.runtime import load
    model = load("runs/mnist/artifacts/tflite_int8.tflite")
    probs = model.predict(uint8_images)            # (N, 10) probabilities
    ev = model.evaluate(images, labels)            # accuracy, confusion matrix
    bench = model.benchmark(runs=200)              # batch-1 latency percentiles

Only numpy, onnxruntime and ai-edge-litert are imported (each only when its format is loaded).
"""

from __future__ import annotations

from pathlib import Path

from edgeport.core.errors import ModelFileError
from edgeport.runtime.base import BenchResult, Evaluation, Model, TensorSpec

# suffix -> (module, class): the one table of formats the runtime can open.
BACKENDS = {
    ".tflite": ("edgeport.runtime.litert", "LiteRTModel"),
    ".onnx": ("edgeport.runtime.onnxrt", "OnnxModel"),
    ".c": ("edgeport.runtime.tflm", "TflmModel"),  # a C array export, run by TFLM (extra `micro`)
}
# load(..., backend=NAME) overrides the suffix: e.g. run a .tflite file in TFLM instead of LiteRT.
NAMED_BACKENDS = {
    "litert": ("edgeport.runtime.litert", "LiteRTModel"),
    "onnxruntime": ("edgeport.runtime.onnxrt", "OnnxModel"),
    "tflm": ("edgeport.runtime.tflm", "TflmModel"),
}


def load(path: str | Path, threads: int | None = None, backend: str | None = None) -> Model:
    """Open a model file by its suffix (or with the named `backend`). Missing, truncated or foreign files
    raise ModelFileError."""
    import importlib

    from edgeport.core.errors import ConfigError

    p = Path(path)
    if backend is not None and backend not in NAMED_BACKENDS:
        raise ConfigError(f"unknown runtime backend {backend!r}; expected one of: {', '.join(NAMED_BACKENDS)}")
    if backend is None and p.suffix.lower() not in BACKENDS:
        raise ModelFileError(f"{p}: unknown model format {p.suffix or '(no suffix)'!r}; expected one of "
                             f"{', '.join(BACKENDS)}")
    if not p.is_file():
        raise ModelFileError(f"{p}: model file not found")
    if p.stat().st_size == 0:
        raise ModelFileError(f"{p}: model file is empty")
    module, cls = NAMED_BACKENDS[backend] if backend else BACKENDS[p.suffix.lower()]
    return getattr(importlib.import_module(module), cls)(p, threads=threads)


__all__ = ["BACKENDS", "NAMED_BACKENDS", "BenchResult", "Evaluation", "Model", "TensorSpec", "load"]
