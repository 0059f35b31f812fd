"""The benchmark methodology, the same for every backend (what onnxruntime_perf_test / benchmark_model measure).

Per model file and per thread count, in this order:
  1. creation: a fresh session / interpreter is opened and timed (`load_ms`);
  2. first inference, timed alone (`first_ms`): lazy allocation and kernel selection show up here;
  3. `warmup` untimed calls, then batch-1 latency over a fixed count (`runs`) or a time budget
     (`time_budget_s`): min / mean / std / p50 / p90 / p95 / p99 / max in ms;
  4. overhead check: edgeport's engine call (`Model._invoke`, what the latencies time), the raw engine call
     (LiteRT set_tensor/invoke/get_tensor, onnxruntime `run`) are timed interleaved on the same prepared
     input, then the full `Model.predict` of the same image; the ratios to the raw call are reported;
  5. throughput (images/s) at each batch size; sizes above 1 only where the file's batch is dynamic.
Memory is each model's own: the peak of a fresh child process that loads the file and runs it at batch 1,
minus the same child's peak without a model, over `memory_repeats` children (memory.py; TFLM: its exact arena).
MACs per image come from the graph (`macs.py`); GMAC/s = MACs / p50 latency (batch 1) and at best throughput.

Ctrl-C at any point raises `Interrupted` carrying everything measured so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeport.core.errors import ConfigError, InputError
from edgeport.runtime.macs import count_macs


@dataclass(frozen=True)
class BenchConfig:
    runs: int = 200  # timed batch-1 calls per artifact and thread count (ignored when time_budget_s is set)
    warmup: int = 20  # untimed calls after the first inference, before timing
    time_budget_s: float | None = None  # time each measurement for this many seconds instead of a fixed count
    threads: tuple[int, ...] = (1, 2)  # engine thread counts to measure, each with a freshly opened model
    batch_sizes: tuple[int, ...] = (1, 32, 256)  # throughput batch sizes; > 1 only for dynamic-batch files
    throughput_runs: int = 20  # timed calls per throughput batch size (ignored when time_budget_s is set)
    overhead_runs: int = 200  # interleaved (edgeport, raw) pairs, then predict calls, for the overhead check
    memory_repeats: int = 3  # fresh child processes measuring the model's own peak memory (0: not measured)

    def __post_init__(self):
        if isinstance(self.threads, int):  # accept threads=2 from the Python API; normalise, do not guess
            object.__setattr__(self, "threads", (self.threads,))
        if self.runs < 1 or self.throughput_runs < 1 or self.overhead_runs < 1:
            raise ConfigError(f"benchmark run counts must be >= 1, got runs={self.runs}, "
                              f"throughput_runs={self.throughput_runs}, overhead_runs={self.overhead_runs}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if self.memory_repeats < 0:
            raise ConfigError(f"--memory-repeats must be >= 0, got {self.memory_repeats}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ConfigError(f"--time-budget must be > 0 seconds, got {self.time_budget_s}")
        if not self.threads or any(t is not None and t < 1 for t in self.threads):
            raise ConfigError(f"--threads must be one or more counts >= 1, got {self.threads}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError(f"--batch-sizes must be one or more sizes >= 1, got {self.batch_sizes}")

    def to_dict(self) -> dict:
        return asdict(self) | {"threads": list(self.threads), "batch_sizes": list(self.batch_sizes)}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a benchmark; `partial` holds what was measured so far (a report or one file's result)."""

    def __init__(self, partial: dict):
        super().__init__("benchmark interrupted")
        self.partial = partial


def latency_stats(samples_ms) -> dict[str, float] | None:
    """min / mean / std / percentiles of latency samples in ms; None when there are none."""
    s = np.asarray(samples_ms, dtype=np.float64)
    if not s.size:
        return None
    p50, p90, p95, p99 = np.percentile(s, [50, 90, 95, 99])
    return {"min": float(s.min()), "mean": float(s.mean()), "std": float(s.std()), "p50": float(p50),
            "p90": float(p90), "p95": float(p95), "p99": float(p99), "max": float(s.max()), "n": int(s.size)}


def _time_calls(fn: Callable[[], object], runs: int, budget_s: float | None, sink: list[float]) -> None:
    """Append the ms of each call of `fn` to `sink`: `runs` calls, or as many as fit in `budget_s` seconds."""
    clock = time.perf_counter
    deadline = clock() + budget_s if budget_s else None
    while (len(sink) < runs) if deadline is None else (clock() < deadline or not sink):
        t0 = clock()
        fn()
        sink.append((clock() - t0) * 1e3)


def check_images_fit(model, images, source: str, default_data: bool) -> None:
    """Raise InputError unless `model` takes the (N, H, W, C) test images as they are."""
    shape = tuple(np.asarray(images[:1]).shape[1:])
    try:
        want = model.spec.image_shape
    except InputError:
        want = None
    if want is None or tuple(shape) != want:
        hint = ("pass --data with labelled images for the model's input" if default_data
                else "give --data whose images match the model's input")
        got = "x".join(str(d) for d in shape)
        raise InputError(f"{model.path.name}: input {model.input.name} has shape {list(model.input.shape)}, "
                         f"which does not take the {got} images of {source}; {hint}")


# --- the benchmark ----------------------------------------------------------------------------------------
def _inputs(model, images: np.ndarray | None, n: int) -> np.ndarray:
    """`n` images for the model: the given ones (repeated if too few), else seeded random pixels."""
    if images is None or not len(images):
        images = np.random.default_rng(0).integers(0, 256, (max(n, 1), *model.spec.image_shape), dtype=np.uint8)
    else:
        images = np.asarray(images[:n])
    reps = -(-n // len(images))
    return np.concatenate([images] * reps)[:n] if reps > 1 else images[:n]


def _summarise(entry: dict, macs: int | None) -> None:
    """Turn the raw sample lists of one thread-count entry into statistics (also on a partial entry)."""
    samples = entry.pop("_latency", None)
    if samples is not None:
        entry["latency_ms"] = latency_stats(samples)
        p50 = (entry["latency_ms"] or {}).get("p50")
        entry["gmacs_per_s"] = macs / (p50 * 1e6) if macs and p50 else None
    raw = entry.pop("_overhead", None)
    if raw is not None:
        p50 = {k: float(np.median(v)) if v else None for k, v in raw.items()}
        ok = p50["raw"] and p50["edgeport"]
        entry["overhead"] = {
            "raw_p50_ms": p50["raw"], "edgeport_p50_ms": p50["edgeport"], "predict_p50_ms": p50["predict"],
            "ratio": p50["edgeport"] / p50["raw"] if ok else None,
            "predict_ratio": p50["predict"] / p50["raw"] if ok and p50["predict"] else None,
            "pairs": min(len(v) for v in raw.values()),
        }
    for t in entry.get("throughput", []):
        s = t.pop("_samples", None)
        if s is not None:
            t["calls"] = len(s)
            t["images_per_s"] = t["batch"] / (float(np.median(s)) / 1e3) if s else None
            t["gmacs_per_s"] = macs * t["images_per_s"] / 1e9 if macs and t["images_per_s"] else None


def _bench_threads(path: Path, images: np.ndarray | None, cfg: BenchConfig, threads: int | None,
                   entry: dict) -> None:
    """Fill `entry` step by step for one thread count, so an interrupt leaves every finished step in it."""
    from edgeport.runtime import load

    model = load(path, threads=threads)
    entry["load_ms"] = model.load_ms
    x1 = model.prepare(_inputs(model, images, 1))
    t0 = time.perf_counter()
    model._invoke(x1)
    entry["first_ms"] = (time.perf_counter() - t0) * 1e3
    for _ in range(cfg.warmup):
        model._invoke(x1)
    entry["_latency"] = []
    _time_calls(lambda: model._invoke(x1), cfg.runs, cfg.time_budget_s, entry["_latency"])

    raw = model.raw_call(x1)
    if raw is None:
        entry["overhead"] = {"ratio": None, "note": f"the {model.format} backend exposes no raw engine call"}
    else:
        image = _inputs(model, images, 1)
        entry["_overhead"] = sink = {"edgeport": [], "raw": [], "predict": []}
        calls = {"edgeport": lambda: model._invoke(x1), "raw": raw}
        # Pairs in alternating order (e r, r e, ...), so each call follows the other as often as itself and
        # load drift or cache effects hit both alike; predict, which churns memory, is timed after, on its own.
        clock = time.perf_counter
        deadline = clock() + cfg.time_budget_s if cfg.time_budget_s else None
        while (len(sink["raw"]) < cfg.overhead_runs) if deadline is None else (clock() < deadline or not sink["raw"]):
            for name in ("edgeport", "raw") if len(sink["raw"]) % 2 else ("raw", "edgeport"):
                fn = calls[name]
                t0 = clock()
                fn()
                sink[name].append((clock() - t0) * 1e3)
        _time_calls(lambda: model.predict(image), cfg.overhead_runs, cfg.time_budget_s, sink["predict"])

    entry["throughput"] = []
    for b in cfg.batch_sizes:
        if b > 1 and not model.batch_dynamic:
            entry["throughput"].append({"batch": b, "images_per_s": None,
                                        "note": f"file has a fixed batch of {model.input.shape[0]}"})
            continue
        xb = model.prepare(_inputs(model, images, b))
        model._invoke(xb)  # resizes the engine's input once if needed; not timed
        t = {"batch": b, "_samples": []}
        entry["throughput"].append(t)
        _time_calls(lambda xb=xb: model._invoke(xb), cfg.throughput_runs, cfg.time_budget_s, t["_samples"])


def benchmark_file(path: str | Path, images: np.ndarray | None = None, cfg: BenchConfig = BenchConfig()) -> dict:
    """Benchmark one .tflite/.onnx file with `cfg`; `images` (uint8, N×H×W) feed it, random pixels if None.

    Returns a JSON-ready dict: macs, the model's own peak memory (memory.py), and per thread count
    load/first/latency/overhead/throughput.
    Ctrl-C raises `Interrupted` whose `partial` is this dict with what was measured so far.
    """
    from edgeport.runtime.memory import measure_memory

    p = Path(path)
    mc = count_macs(p)
    out: dict = {"settings": cfg.to_dict(), "macs": mc.to_dict(), "by_threads": [], "memory": None}
    try:
        for threads in cfg.threads:
            entry: dict = {"threads": threads}
            out["by_threads"].append(entry)
            _bench_threads(p, images, cfg, threads, entry)
            _summarise(entry, mc.macs)
        if cfg.memory_repeats:
            out["memory"] = measure_memory(p, cfg.threads[0], cfg.batch_sizes, cfg.memory_repeats).to_dict()
    except KeyboardInterrupt:
        for entry in out["by_threads"]:
            _summarise(entry, mc.macs)
        out["interrupted"] = True
        raise Interrupted(out) from None
    return out


def headline(bench: dict) -> dict:
    """The figures a table shows, from the first thread count: p50 etc., overhead ratio, GMAC/s, best images/s."""
    first = (bench.get("by_threads") or [{}])[0]
    tput = [t for t in first.get("throughput", []) if t.get("images_per_s")]
    best = max(tput, key=lambda t: t["images_per_s"]) if tput else None
    return {"threads": first.get("threads"), "latency_ms": first.get("latency_ms"),
            "model_peak_mb": (bench.get("memory") or {}).get("model_peak_mb"),
            "overhead_ratio": (first.get("overhead") or {}).get("ratio"), "gmacs_per_s": first.get("gmacs_per_s"),
            "best_images_per_s": best["images_per_s"] if best else None, "best_batch": best["batch"] if best else None}
