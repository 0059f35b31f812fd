"""Chain the stages by paths: train -> export -> evaluate + benchmark -> report. Never by live objects.

Each stage reads what the previous one wrote into the run folder, so each can also run alone:
    train:   model.keras, history.json, curves.png, reference.npz, train.json
    export:  artifacts/*.tflite|*.onnx, manifest.json (written last)
    report:  report.json, report.md, report.html (written last)
`evaluate_run` imports no TensorFlow: it needs only the runtime and the numpy data loader.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from edgeport.core import files
from edgeport.core.environment import cpu_count
from edgeport.core.errors import EdgeportError, OutputError
from edgeport.core.manifest import MANIFEST, read_manifest
from edgeport.runtime.bench import BenchConfig  # re-exported: the settings live with the benchmark

DOWNSTREAM = (MANIFEST, "report.json", "report.md", "report.html")  # describe an older model once training restarts


def quick_configs():
    """The --quick settings: the same path (train, export, evaluate, benchmark, report) on a small subset, for smoke
    runs under 90 s: the three basic targets (the CLI skips the full recipe unless --recipe is given), one thread,
    batch 1."""
    from edgeport.export.export import ExportConfig
    from edgeport.train.fit import TrainConfig

    return (TrainConfig(epochs=2, batch_size=64, train_limit=12000, val_size=1000, test_limit=2000),  # ~98%
            ExportConfig(calibration_size=100, validation_size=128),
            BenchConfig(runs=50, warmup=5, threads=(1,), batch_sizes=(1,), throughput_runs=10, overhead_runs=50))


def clear_downstream(run_dir: Path) -> None:
    for name in DOWNSTREAM:
        (run_dir / name).unlink(missing_ok=True)


def run_pipeline(out_dir: str | Path, train_cfg=None, export_cfg=None, bench_cfg: BenchConfig = BenchConfig(),
                 recipe=None) -> dict:
    """Train, export, evaluate and benchmark into `out_dir`; return the report (also written to disk).

    `recipe` (edgeport.export.recipe.load_recipe) makes the compression variants instead of `export_cfg.targets`."""
    from edgeport.export.export import ExportConfig, export_run
    from edgeport.runtime.report import write_report
    from edgeport.train.fit import TrainConfig, train

    train_cfg = train_cfg or TrainConfig()
    export_cfg = export_cfg or ExportConfig()
    out = files.ensure_writable_dir(out_dir)
    clear_downstream(out)
    t0 = time.perf_counter()
    train(train_cfg, out)
    export_run(out, export_cfg, recipe=recipe)
    report = evaluate_run(out, bench_cfg)
    report["pipeline_seconds"] = round(time.perf_counter() - t0, 1)
    write_report(out, report)
    return report


def evaluate_run(run_dir: str | Path, bench_cfg: BenchConfig | None = BenchConfig()) -> dict:
    """Evaluate every artifact in the run's manifest on the test set (and benchmark it unless bench_cfg is None).

    An artifact that fails to load or run gets status "failed" with the error; the others still run.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeport.core.data import load_dataset
    from edgeport.runtime import load
    from edgeport.runtime.bench import Interrupted, benchmark_file, headline
    from edgeport.runtime.fidelity import compare, confusion_matrix

    run = Path(run_dir)
    manifest = read_manifest(run)
    train_info = files.read_json(run / "train.json", "training record") if (run / "train.json").exists() else {}
    cfg = train_info.get("config") or {}
    data = load_dataset(cfg.get("data_dir"), cfg.get("val_size", 5000), cfg.get("train_limit"), cfg.get("test_limit"))
    images, labels = data.test_images, data.test_labels
    reference = _read_reference(run, labels)
    model_file = run / "model.keras"
    ref_accuracy = float((reference.argmax(1) == labels).mean()) if reference is not None else None
    rows, predictions = [], {} if reference is None else {"reference": reference.argmax(1)}
    report = {
        "run": run.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": {"source": data.source, "test_images": int(len(images)),
                    "subset": cfg.get("test_limit") is not None, "data_dir": cfg.get("data_dir"),
                    "test_limit": cfg.get("test_limit")},
        "reference": {"accuracy": ref_accuracy, "path": model_file.name if model_file.exists() else None,
                      "bytes": model_file.stat().st_size if model_file.exists() else None,
                      "gzip_bytes": files.gzip_size(model_file) if model_file.exists() else None,
                      "model_name": train_info.get("model_name")},
        "bench": None if bench_cfg is None else bench_cfg.to_dict(),
        "artifacts": rows,
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": cpu_count(), **(manifest.get("packages") or {})},
    }
    if reference is not None:
        ref_confusion = confusion_matrix(labels, reference.argmax(1), max(reference.shape[1], int(labels.max()) + 1))
        report["reference"]["confusion"] = ref_confusion.tolist()
        report["reference"]["per_class_accuracy"] = [float(ref_confusion[i, i] / t) if t else None
                                                     for i, t in enumerate(ref_confusion.sum(axis=1))]
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as progress:
        for entry in manifest["artifacts"]:
            task = progress.add_task(f"eval {entry['name']}", total=len(images))
            row = {k: entry.get(k) for k in ("name", "format", "precision", "path", "bytes", "gzip_bytes")}
            row["lineage"] = entry.get("lineage", {})
            try:
                model = load(run / entry["path"])
                ev = model.evaluate(images, labels, reference,
                                    progress=lambda n, t=task: progress.update(t, completed=n))
                row.update(status="ok", **ev.to_dict())
                predictions[entry["name"]] = ev.predictions
                if bench_cfg is not None:
                    progress.update(task, description=f"bench {entry['name']}")
                    row["benchmark"] = benchmark_file(run / entry["path"], images, bench_cfg)
                    row.update(headline(row["benchmark"]))
            except EdgeportError as exc:
                row.update(status="failed", error=str(exc))
            except KeyboardInterrupt as exc:  # keep what was measured: the CLI prints it, nothing is written
                partial = getattr(exc, "partial", None)
                row.update(status="interrupted", benchmark=partial, **(headline(partial) if partial else {}))
                rows.append(row)
                report["interrupted"] = True
                raise Interrupted(report) from None
            progress.remove_task(task)
            rows.append(row)
    report["fidelity"] = compare(predictions, labels)
    return report


def evaluate_files(paths: list, data_dir: str | None = None, bench_cfg: BenchConfig | None = None,
                   limit: int | None = None) -> dict:
    """Evaluate (and benchmark) loose model files, ours or not, on a labelled IDX test set."""
    from edgeport.core.data import load_dataset
    from edgeport.runtime import load
    from edgeport.runtime.bench import Interrupted, benchmark_file, check_images_fit, headline
    from edgeport.runtime.fidelity import compare

    data = load_dataset(data_dir, val_size=0, test_limit=limit)  # no training here: keep every image
    rows, predictions = [], {}
    report = {"run": ", ".join(str(p) for p in paths), "dataset": {"source": data.source,
              "test_images": len(data.test_images), "data_dir": data_dir, "test_limit": limit},
              "reference": {}, "bench": None if bench_cfg is None else bench_cfg.to_dict(), "artifacts": rows}
    for p in paths:
        model = load(p)
        check_images_fit(model, data.test_images, data.source, data_dir is None)
        ev = model.evaluate(data.test_images, data.test_labels)
        row = {"name": Path(p).name, "format": model.format, "precision": model.input.dtype, "path": str(p),
               "bytes": Path(p).stat().st_size, "gzip_bytes": files.gzip_size(p), "status": "ok", **ev.to_dict()}
        predictions[row["name"]] = ev.predictions
        if bench_cfg is not None:
            try:
                row["benchmark"] = benchmark_file(p, data.test_images, bench_cfg)
            except KeyboardInterrupt as exc:
                partial = getattr(exc, "partial", None)
                rows.append(row | {"status": "interrupted", "benchmark": partial,
                                   **(headline(partial) if partial else {})})
                raise Interrupted(report | {"interrupted": True}) from None
            row.update(headline(row["benchmark"]))
        rows.append(row)
    report["fidelity"] = compare(predictions, data.test_labels)
    return report


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
