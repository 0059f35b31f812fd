"""`.tflite` files through the LiteRT interpreter (ai-edge-litert): no TensorFlow needed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeport.core.errors import ModelFileError, require
from edgeport.runtime.base import Model, TensorSpec

# What opening a file imports besides this module: the memory baseline (memory.py) imports the same, no model.
ENGINE_MODULES = ("ai_edge_litert.interpreter", "ai_edge_litert.schema_py_generated", "edgeport.runtime.metadata")


def _spec(d: dict) -> TensorSpec:
    sig = d.get("shape_signature")
    shape = tuple(int(s) for s in (sig if sig is not None and len(sig) else d["shape"]))
    scale, zp = d.get("quantization", (0.0, 0))
    quantized = scale not in (0, 0.0)
    return TensorSpec(
        name=d["name"],
        shape=shape,
        dtype=np.dtype(d["dtype"]).name,
        scale=float(scale) if quantized else None,
        zero_point=int(zp) if quantized else None,
    )


class LiteRTModel(Model):
    format = "tflite"

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__(path)
        interp_mod = require("ai_edge_litert.interpreter", "runtime")
        t0 = time.perf_counter()
        try:
            self._interp = interp_mod.Interpreter(model_path=str(self.path), num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{self.path}: not a valid TFLite model ({first[:160]})") from None
        self.load_ms = (time.perf_counter() - t0) * 1e3
        ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ModelFileError(f"{self.path}: expected one input and one output, found {len(ins)} and {len(outs)}")
        self.input, self.output = _spec(ins[0]), _spec(outs[0])
        self._in_index, self._out_index = ins[0]["index"], outs[0]["index"]
        self.batch_dynamic = self.input.shape[0] == -1
        self._batch = int(ins[0]["shape"][0])
        self.metadata = read_metadata(self.path)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:
            self._interp.resize_tensor_input(self._in_index, [len(x), *x.shape[1:]])
            self._interp.allocate_tensors()
            self._batch = len(x)
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        return self._interp.get_tensor(self._out_index)

    def raw_call(self, x: np.ndarray):
        self._invoke(x)  # resize to x's batch once, outside the timed calls
        interp, i, o = self._interp, self._in_index, self._out_index

        def call():  # the three LiteRT calls benchmark_model would time, nothing else
            interp.set_tensor(i, x)
            interp.invoke()
            return interp.get_tensor(o)

        return call


def read_metadata(path: Path) -> dict:
    """Key/value metadata embedded in the file; `{}` when it has none (files edgeport did not write)."""
    try:
        from edgeport.runtime.metadata import read_tflite_metadata
    except ImportError:
        return {}
    return read_tflite_metadata(path)
