"""TensorFlow Lite for Microcontrollers on the host: the same interpreter and reference kernels a board runs.

    from edgeport.runtime import load
    m = load("runs/mnist/artifacts/c_array.c")                      # the C array export, parsed back to bytes
    m = load("runs/mnist/artifacts/tflite_int8.tflite", backend="tflm")  # or any int8 .tflite
    m.predict(images); m.arena_bytes()                               # what TFLM itself recorded

Needs the optional extra `micro` (the PyPI package tflite-micro); without it, loading raises a one-line
MissingDependencyError naming the extra. TFLM runs one image per invoke (fixed batch), like a device.
Its C++ side logs to the process's stderr (file descriptor 2); `_captured_stderr` collects or hides that.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeport.core.errors import InputError, ModelFileError, require
from edgeport.runtime.base import Model, TensorSpec

C_SUFFIXES = (".c", ".cc", ".h")
_ARENA_RE = re.compile(r"Arena allocation total (\d+) bytes")


def parse_c_array(text: str, name: str = "model.c") -> bytes:
    """The bytes of the first `unsigned char NAME[] = { 0x.., ... };` array in C source text."""
    m = re.search(r"unsigned\s+char\s+\w+\s*\[\s*\d*\s*\]\s*=\s*\{([^}]*)\}", text)
    if m is None:
        raise ModelFileError(f"{name}: no `unsigned char NAME[] = {{...}}` array found in the C source")
    body = re.sub(r"/\*.*?\*/|//[^\n]*", "", m.group(1), flags=re.S)
    tokens = [t.strip() for t in body.split(",") if t.strip()]
    try:
        values = [int(t, 0) for t in tokens]
    except ValueError as exc:
        raise ModelFileError(f"{name}: the C array holds something other than integer literals ({exc})") from None
    if any(v < 0 or v > 255 for v in values):
        raise ModelFileError(f"{name}: the C array holds values outside 0..255")
    return bytes(values)


def read_model_bytes(path: str | Path) -> bytes:
    """A .tflite file's bytes, or the bytes held by an exported C array (.c/.cc/.h)."""
    p = Path(path)
    if p.suffix.lower() in C_SUFFIXES:
        return parse_c_array(p.read_text(encoding="utf-8", errors="replace"), p.name)
    return p.read_bytes()


@contextlib.contextmanager
def _captured_stderr():
    """Redirect file descriptor 2 (where TFLM's C++ logs) into a buffer; yields a list that gets the text."""
    import sys

    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def _spec(d: dict, name: str) -> TensorSpec:
    q = d.get("quantization_parameters") or {}
    scales, zps = np.asarray(q.get("scales", [])), np.asarray(q.get("zero_points", []))
    quantized = scales.size == 1 and float(scales[0]) != 0.0
    return TensorSpec(name=name, shape=tuple(int(s) for s in d["shape"]), dtype=np.dtype(d["dtype"]).name,
                      scale=float(scales[0]) if quantized else None, zero_point=int(zps[0]) if quantized else None)


def _io_names(data: bytes) -> tuple[str, str]:
    """Names of the first input and output tensor (TFLM's details leave them out); read from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        graph = schema.Model.GetRootAs(bytearray(data), 0).Subgraphs(0)
        return tuple(graph.Tensors(idx).Name().decode("utf-8", "replace")
                     for idx in (graph.Inputs(0), graph.Outputs(0)))
    except Exception:  # names are cosmetic: TFLM already accepted the model
        return "input", "output"


class TflmModel(Model):
    """A .tflite model (or the C array holding one) run by the TFLM interpreter with a fixed tensor arena."""

    format = "tflm"

    def __init__(self, path: str | Path, threads: int | None = None, arena_size: int | None = None):
        super().__init__(path)  # `threads` is accepted for the common signature: TFLM is single-threaded
        self._runtime = require("tflite_micro", "micro").runtime
        from edgeport.runtime.metadata import tflite_metadata_from_bytes

        self.model_bytes = read_model_bytes(self.path)
        self.arena_size = int(arena_size) if arena_size else max(len(self.model_bytes) * 2, 1 << 20)
        t0 = time.perf_counter()
        try:
            with _captured_stderr() as log:
                self._interp = self._runtime.Interpreter.from_bytes(self.model_bytes, arena_size=self.arena_size)
        except (RuntimeError, ValueError) as exc:
            why = (log[0].strip().splitlines() or [str(exc)])[-1] if log and log[0].strip() else str(exc)
            raise ModelFileError(f"{self.path}: TFLM cannot load this model ({why[:160]})") from None
        self.load_ms = (time.perf_counter() - t0) * 1e3
        in_name, out_name = _io_names(self.model_bytes)
        self.input = _spec(self._interp.get_input_details(0), in_name)
        self.output = _spec(self._interp.get_output_details(0), out_name)
        self.batch_dynamic = False
        self.metadata = tflite_metadata_from_bytes(self.model_bytes, str(self.path))
        self._invoked = False

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if x.shape != self.input.shape:
            raise InputError(f"{self.path.name}: TFLM input must be exactly {self.input.shape}, got {x.shape}")
        self._interp.set_input(x, 0)
        self._interp.invoke()
        self._invoked = True
        return np.array(self._interp.get_output(0), copy=True)

    def raw_call(self, x: np.ndarray):
        interp = self._interp

        def call():  # the bare TFLM calls, for the benchmark's overhead check
            interp.set_input(x, 0)
            interp.invoke()
            return interp.get_output(0)

        return call

    def arena_bytes(self) -> int:
        """Tensor-arena bytes this model uses, as TFLM's RecordingMicroAllocator reports them."""
        if not self._invoked:
            self._invoke(self.prepare(np.zeros(self.spec.image_shape, np.uint8)))
        with _captured_stderr() as log:
            self._interp.print_allocations()
        m = _ARENA_RE.search(log[0] if log else "")
        if m is None:
            raise ModelFileError(f"{self.path}: TFLM printed no arena allocation record")
        return int(m.group(1))

    def smallest_arena(self, hi: int | None = None) -> int:
        """The smallest arena (bytes) in which this model allocates and runs, by bisection: a cross-check."""
        probe = self.prepare(np.zeros(self.spec.image_shape, np.uint8))

        def fits(size: int) -> bool:
            try:
                with _captured_stderr():
                    it = self._runtime.Interpreter.from_bytes(self.model_bytes, arena_size=size)
                    it.set_input(probe, 0)
                    it.invoke()
                return True
            except (RuntimeError, ValueError):
                return False

        lo, hi = 0, hi or self.arena_size  # invariant: lo does not fit, hi fits
        if not fits(hi):
            raise ModelFileError(f"{self.path}: does not run in TFLM even with a {hi}-byte arena")
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        return hi
