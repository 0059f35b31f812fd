"""Each model's own memory: the peak resident memory of a fresh process that loads one file and runs it, minus
the peak of the same process without a model (the runtime's baseline).

Why a child process: a peak is per process and only ever goes up, so in the process that benchmarks every file
(and, on the export host, has TensorFlow loaded: 2 GB) it says nothing about one 460 KB model. A fresh
`python -m edgeport.runtime.memory` imports only the runtime, as an app on a device would. Per file it
  1. imports edgeport.runtime and the file's engine (LiteRT or onnxruntime), then loads the file with the
     benchmark's first thread count;
  2. runs one image (batch 1) `RUNS` times and reads its peak: `peak_mb`, the headline (one image at a time
     is how a device app runs);
  3. for each dynamic batch size above 1 of the benchmark, runs a few calls and reads the peak again
     (`by_batch`: cumulative, as the batches grow).
The baseline child does step 1 without a file (imports the same engine, loads nothing). `model_peak_mb` is the
median file peak minus the median baseline; both are measured `repeats` times and the spread (max - min) is
reported beside them, so a reader sees how far to trust the difference.

The peak is Linux's VmHWM (/proc/self/status), which starts afresh at exec. Not `ru_maxrss`: a child started
with vfork/posix_spawn inherits its parent's peak there at exec (a 2 GB TensorFlow parent would show in every
child). Elsewhere the child reports `ru_maxrss` and the method says so; without either, memory is not measured.
TFLM (C arrays for microcontrollers) keeps its exact figure: the tensor arena TFLM's allocator recorded.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

RUNS = 10  # batch-1 calls before the headline peak is read (the first call allocates; later ones show growth)
BATCH_RUNS = 3  # calls per larger batch size
CHILD_TIMEOUT_S = 300  # one child: start, load, run; generous for a slow board
MB = 1024 * 1024


@dataclass(frozen=True)
class MemoryResult:
    """What `measure_memory` found for one file: the model's own peak and how it was measured."""

    model_peak_mb: float | None  # median file peak - median baseline (batch 1)
    baseline_mb: float | None  # median peak of the child without a model (runtime + engine imported)
    peak_mb: float | None  # median peak of the child with the model (batch 1)
    spread_mb: float | None  # max - min of the file's peaks over the repeats
    baseline_spread_mb: float | None  # max - min of the baseline's peaks over the repeats
    repeats: int  # children run for the file (and for the baseline)
    threads: int | None  # engine threads of the measured session
    method: str  # how the peak was read
    samples_mb: list[float] = field(default_factory=list)  # each child's file peak
    baseline_samples_mb: list[float] = field(default_factory=list)
    by_batch: dict[str, float] = field(default_factory=dict)  # batch size -> model's own peak (median - baseline)
    arena_bytes: int | None = None  # TFLM only: the tensor arena, exact
    error: str | None = None  # why nothing was measured

    def to_dict(self) -> dict:
        return asdict(self)


def _engine_backend(path: Path) -> tuple[str, str]:
    """(backend module, class) that opens `path`: the runtime's one table of formats."""
    from edgeport.runtime import BACKENDS

    return BACKENDS.get(path.suffix.lower(), ("", ""))


def measure_memory(path: str | Path, threads: int | None = 1, batch_sizes: tuple[int, ...] = (1,),
                   repeats: int = 3) -> MemoryResult:
    """The model's own peak memory (MB) at batch 1, from `repeats` fresh child processes minus the baseline."""
    p = Path(path)
    module, _ = _engine_backend(p)
    if module.endswith(".tflm"):
        return _tflm_arena(p, threads)
    runs = [_child([str(p), "--threads", str(threads or 0), "--batch-sizes", ",".join(map(str, batch_sizes))])
            for _ in range(repeats)]
    errors = [r["error"] for r in runs if "error" in r]
    base = measure_baseline(module, repeats)
    if errors or "error" in base:
        return MemoryResult(None, base.get("median"), None, None, None, repeats, threads,
                            base.get("method", runs[0].get("method", "")), error=(errors or [base.get("error")])[0])
    samples = [r["peak_mb"] for r in runs]
    peak = statistics.median(samples)
    by_batch = {}
    for b in sorted({int(k) for r in runs for k in r["by_batch"]}):
        vals = [r["by_batch"][str(b)] for r in runs if str(b) in r["by_batch"]]
        by_batch[str(b)] = round(statistics.median(vals) - base["median"], 3)
    return MemoryResult(
        model_peak_mb=round(peak - base["median"], 3), baseline_mb=round(base["median"], 3), peak_mb=round(peak, 3),
        spread_mb=round(max(samples) - min(samples), 3), baseline_spread_mb=round(base["spread"], 3),
        repeats=repeats, threads=threads, method=runs[0]["method"], samples_mb=samples,
        baseline_samples_mb=base["samples"], by_batch=by_batch)


@cache
def measure_baseline(module: str, repeats: int = 3) -> dict:
    """Peak of a child that imports the runtime and the engine of backend `module` but loads no model; measured
    once per process and backend (it does not depend on the file)."""
    runs = [_child(["--baseline", module]) for _ in range(repeats)]
    bad = [r["error"] for r in runs if "error" in r]
    if bad:
        return {"error": bad[0]}
    samples = [r["peak_mb"] for r in runs]
    return {"median": statistics.median(samples), "spread": max(samples) - min(samples), "samples": samples,
            "method": runs[0]["method"]}


def _child(args: list[str]) -> dict:
    """Run `python -m edgeport.runtime.memory ARGS` and return its JSON (or {"error": why})."""
    cmd = [sys.executable, "-m", "edgeport.runtime.memory", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"the memory measurement took over {CHILD_TIMEOUT_S} s"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"error": f"the memory measurement failed: {tail[:200]}"}


def _tflm_arena(path: Path, threads: int | None) -> MemoryResult:
    from edgeport.core.errors import EdgeportError
    from edgeport.runtime import load

    method = "TFLM tensor arena recorded by its RecordingMicroAllocator (exact; what the board must reserve)"
    try:
        arena = load(path, backend="tflm").arena_bytes()
    except EdgeportError as exc:
        return MemoryResult(None, None, None, None, None, 0, threads, method, error=str(exc))
    return MemoryResult(round(arena / MB, 4), None, None, 0.0, None, 1, None, method, arena_bytes=arena)


# --- the child --------------------------------------------------------------------------------------------
def _peak_mb() -> tuple[float | None, str]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "VmHWM of a fresh child process (Linux)"
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return None, "not measured: no VmHWM or getrusage on this system"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak / MB if sys.platform == "darwin" else peak / 1024,
            "ru_maxrss of a fresh child process (may include its parent's peak)")


def _child_main(argv: list[str]) -> dict:
    import importlib

    import numpy as np

    if argv[0] == "--baseline":  # the runtime and the engine, no model
        module = importlib.import_module(argv[1])
        for engine in getattr(module, "ENGINE_MODULES", ()):
            importlib.import_module(engine)
        peak, method = _peak_mb()
        return {"peak_mb": peak, "method": method}
    path, threads = argv[0], int(argv[argv.index("--threads") + 1]) or None
    sizes = [int(b) for b in argv[argv.index("--batch-sizes") + 1].split(",") if b]
    from edgeport.runtime import load

    model = load(path, threads=threads)
    shape = tuple(max(d, 1) for d in model.spec.image_shape)  # (H, W, C)

    def images(n: int) -> np.ndarray:  # a fixed pattern: memory does not depend on pixels, and numpy.random
        return (np.arange(n * int(np.prod(shape))) % 251).astype(np.uint8).reshape(n, *shape)

    x1 = model.prepare(images(1))  # (importing it would cost the child megabytes the baseline does not have)
    for _ in range(RUNS):
        model._invoke(x1)
    peak, method = _peak_mb()
    by_batch = {}
    for b in sorted(s for s in sizes if s > 1 and model.batch_dynamic):
        xb = model.prepare(images(b))
        for _ in range(BATCH_RUNS):
            model._invoke(xb)
        by_batch[str(b)] = _peak_mb()[0]
    return {"peak_mb": peak, "method": method, "by_batch": by_batch}


if __name__ == "__main__":
    from edgeport.core.errors import EdgeportError

    try:
        result = _child_main(sys.argv[1:])
    except EdgeportError as exc:
        result = {"error": str(exc)}
    if result.get("peak_mb") is None and "error" not in result:
        result = {"error": result.get("method", "not measured")}
    print(json.dumps(result))
