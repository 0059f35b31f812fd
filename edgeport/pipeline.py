"""Chain the stages by paths: train -> export -> evaluate + benchmark -> report. Never by live objects.

Each stage reads what the previous one wrote into the run folder, so each can also run alone:
    train:   model.keras, history.json, curves.png, reference.npz, train.json
    export:  artifacts/*.tflite|*.onnx, manifest.json (written last)
    report:  report.json, report.md (written last)
`evaluate_run` imports no TensorFlow: it needs only the runtime and the numpy data loader.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport import io
from edgeport.errors import EdgeportError, OutputError
from edgeport.manifest import MANIFEST, read_manifest

DOWNSTREAM = (MANIFEST, "report.json", "report.md")  # describe an older model once training starts again


@dataclass(frozen=True)
class BenchConfig:
    runs: int = 200  # timed batch-1 inferences per artifact
    warmup: int = 20  # untimed inferences before timing
    threads: int | None = None  # engine threads; None: the engine's default


def quick_configs():
    """The --quick settings: the same path on a small subset, for smoke runs (about a minute)."""
    from edgeport.export.export import ExportConfig
    from edgeport.train.fit import TrainConfig

    return (TrainConfig(epochs=1, train_limit=6000, val_size=1000, test_limit=2000),
            ExportConfig(calibration_size=100, validation_size=128),
            BenchConfig(runs=50, warmup=5))


def clear_downstream(run_dir: Path) -> None:
    for name in DOWNSTREAM:
        (run_dir / name).unlink(missing_ok=True)


def run_pipeline(out_dir: str | Path, train_cfg=None, export_cfg=None, bench_cfg: BenchConfig = BenchConfig()) -> dict:
    """Train, export, evaluate and benchmark into `out_dir`; return the report (also written to disk)."""
    from edgeport.export.export import ExportConfig, export_run
    from edgeport.runtime.report import write_report
    from edgeport.train.fit import TrainConfig, train

    train_cfg = train_cfg or TrainConfig()
    export_cfg = export_cfg or ExportConfig()
    out = io.ensure_writable_dir(out_dir)
    clear_downstream(out)
    t0 = time.perf_counter()
    train(train_cfg, out)
    export_run(out, export_cfg)
    report = evaluate_run(out, bench_cfg)
    report["pipeline_seconds"] = round(time.perf_counter() - t0, 1)
    write_report(out, report)
    return report


def evaluate_run(run_dir: str | Path, bench_cfg: BenchConfig | None = BenchConfig()) -> dict:
    """Evaluate every artifact in the run's manifest on the test set (and benchmark it unless bench_cfg is None).

    An artifact that fails to load or run gets status "failed" with the error; the others still run.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeport.runtime import load
    from edgeport.train.data import load_dataset

    run = Path(run_dir)
    manifest = read_manifest(run)
    train_info = io.read_json(run / "train.json", "training record") if (run / "train.json").exists() else {}
    cfg = train_info.get("config") or {}
    data = load_dataset(cfg.get("data_dir"), cfg.get("val_size", 5000), cfg.get("train_limit"), cfg.get("test_limit"))
    images, labels = data.test_images, data.test_labels
    reference = _read_reference(run, labels)
    model_file = run / "model.keras"
    ref_accuracy = float((reference.argmax(1) == labels).mean()) if reference is not None else None
    rows = []
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as progress:
        for entry in manifest["artifacts"]:
            task = progress.add_task(f"eval {entry['name']}", total=len(images))
            row = {k: entry.get(k) for k in ("name", "format", "precision", "path", "bytes", "gzip_bytes")}
            row["lineage"] = entry.get("lineage", {})
            try:
                model = load(run / entry["path"], threads=bench_cfg.threads if bench_cfg else None)
                ev = model.evaluate(images, labels, reference,
                                    progress=lambda n, t=task: progress.update(t, completed=n))
                row.update(status="ok", **ev.to_dict())
                if bench_cfg is not None:
                    progress.update(task, description=f"bench {entry['name']}")
                    b = model.benchmark(images[0], runs=bench_cfg.runs, warmup=bench_cfg.warmup)
                    row.update(benchmark=b.to_dict(), latency_ms=b.latency_ms)
            except EdgeportError as exc:
                row.update(status="failed", error=str(exc))
            progress.remove_task(task)
            rows.append(row)
    return {
        "run": run.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": {"source": data.source, "test_images": int(len(images)),
                    "subset": cfg.get("test_limit") is not None},
        "reference": {"accuracy": ref_accuracy, "path": model_file.name if model_file.exists() else None,
                      "bytes": model_file.stat().st_size if model_file.exists() else None,
                      "gzip_bytes": io.gzip_size(model_file) if model_file.exists() else None,
                      "model_name": train_info.get("model_name")},
        "bench": None if bench_cfg is None else {"runs": bench_cfg.runs, "warmup": bench_cfg.warmup,
                                                 "threads": bench_cfg.threads, "batch": 1},
        "artifacts": rows,
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": _cpu_count(), **(manifest.get("packages") or {})},
    }


def evaluate_files(paths: list, data_dir: str | None = None, bench_cfg: BenchConfig | None = None,
                   limit: int | None = None) -> dict:
    """Evaluate (and benchmark) loose model files, ours or not, on a labelled IDX test set."""
    from edgeport.runtime import load
    from edgeport.train.data import load_dataset

    data = load_dataset(data_dir, val_size=0, test_limit=limit)  # no training here: keep every image
    rows = []
    for p in paths:
        model = load(p, threads=bench_cfg.threads if bench_cfg else None)
        ev = model.evaluate(data.test_images, data.test_labels)
        row = {"name": Path(p).name, "format": model.format, "precision": model.input.dtype, "path": str(p),
               "bytes": Path(p).stat().st_size, "status": "ok", **ev.to_dict()}
        if bench_cfg is not None:
            b = model.benchmark(data.test_images[0], runs=bench_cfg.runs, warmup=bench_cfg.warmup)
            row.update(benchmark=b.to_dict(), latency_ms=b.latency_ms)
        rows.append(row)
    return {"run": ", ".join(str(p) for p in paths), "dataset": {"source": data.source,
            "test_images": len(data.test_images)}, "reference": {}, "artifacts": rows}


def _read_reference(run: Path, labels: np.ndarray) -> np.ndarray | None:
    path = run / "reference.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            probs, ref_labels = z["probs"], z["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise OutputError(f"{path}: unreadable reference predictions ({exc})") from None
    if len(ref_labels) != len(labels) or not np.array_equal(ref_labels, labels):
        raise OutputError(f"{path}: reference predictions were made on a different test set")
    return probs


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
