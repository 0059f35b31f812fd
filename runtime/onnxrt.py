"""`.onnx` files through onnxruntime (CPU execution provider)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeport.core.errors import ModelFileError, require
from edgeport.runtime.base import Model, TensorSpec

ENGINE_MODULES = ("onnxruntime",)  # what opening a file imports besides this module (memory.py's baseline)

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in arg.shape)
    return TensorSpec(name=arg.name, shape=shape, dtype=_ORT_TYPES.get(arg.type, arg.type))


class OnnxModel(Model):
    format = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__(path)
        ort = require("onnxruntime", "runtime")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        t0 = time.perf_counter()
        try:
            self._sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{self.path}: not a valid ONNX model ({first[:160]})") from None
        self.load_ms = (time.perf_counter() - t0) * 1e3
        ins, outs = self._sess.get_inputs(), self._sess.get_outputs()
        if len(ins) != 1 or len(outs) != 1:
            raise ModelFileError(f"{self.path}: expected one input and one output, found {len(ins)} and {len(outs)}")
        self.input, self.output = _spec(ins[0]), _spec(outs[0])
        self._in_name, self._out_names = ins[0].name, [outs[0].name]
        self.batch_dynamic = self.input.shape[0] == -1
        self.metadata = dict(self._sess.get_modelmeta().custom_metadata_map)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run(self._out_names, {self._in_name: x})[0]

    def raw_call(self, x: np.ndarray):
        run, names, feed = self._sess.run, self._out_names, {self._in_name: x}
        return lambda: run(names, feed)
