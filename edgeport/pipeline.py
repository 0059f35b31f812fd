"""Chain the stages by paths: train -> export -> evaluate + benchmark -> report. Never by live objects.

Each stage reads what the previous one wrote into the run folder, so each can also run alone:
    train:   model.keras, history.json, curves.png, reference.npz, train.json
    export:  artifacts/*.tflite|*.onnx, manifest.json (written last)
    report:  report.json, report.md, report.html (written last)
`evaluate_run` imports no TensorFlow: it needs only the runtime and the numpy data loader.
Both export and evaluation take an `executor` (edgeport.scale.RayExecutor: Ray tasks) instead of running here;
the run folder ends up the same.
"""

from __future__ import annotations

import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.core import files
from edgeport.core.data import DataConfig, Dataset, load_dataset
from edgeport.core.environment import cpu_count
from edgeport.core.errors import ConfigError, EdgeportError, InputError, OutputError
from edgeport.core.run import CALIBRATION_CURVE, RunFolder
from edgeport.runtime.bench import BenchConfig  # re-exported: the settings live with the benchmark


def quick_configs():
    """The --quick settings: the same path (train, export, evaluate, benchmark, report) on a small subset, for smoke
    runs under 90 s: the three basic targets (the CLI skips the full recipe unless --recipe is given), one thread,
    batch 1."""
    from edgeport.export.export import ExportConfig
    from edgeport.train.fit import TrainConfig

    return (TrainConfig(epochs=2, batch_size=64, data=DataConfig(train_limit=12000, val_size=1000, test_limit=2000)),
            ExportConfig(calibration_size=100, validation_size=128),
            BenchConfig(runs=50, warmup=5, threads=(1,), batch_sizes=(1,), throughput_runs=10, overhead_runs=50,
                        memory_repeats=1))


@dataclass
class Answers:
    """What evaluate_run / evaluate_files leave beside the report for callers that compare further (devices,
    --predictions): each file's top-1 class per test image, and the test set they were made on."""

    predictions: dict = field(default_factory=dict)  # artifact name -> (N,) top-1 classes
    dataset: Dataset | None = None  # None: nothing labelled fitted the files (speed only)


def clear_downstream(run_dir: Path) -> None:
    RunFolder(run_dir).clear_downstream()


def run_pipeline(out_dir: str | Path, train_cfg=None, export_cfg=None, bench_cfg: BenchConfig = BenchConfig(),
                 recipe=None, executor=None, import_cfg=None) -> dict:
    """Train (or import `import_cfg.model`), export, evaluate and benchmark into `out_dir`; return the report (also
    written to disk).

    `import_cfg` (edgeport.train.bring.ImportConfig) brings your own model: it becomes the run's reference instead of
    a trained one, and `train_cfg` gives only the fine-tunes' strategy. `recipe` (edgeport.export.recipe.load_recipe)
    makes the compression variants instead of `export_cfg.targets`. `executor` (edgeport.scale) makes the variants
    and evaluations elsewhere; training runs here, under `train_cfg.strategy`, which the fine-tunes use too.
    Settings, strategy and the executor's resources are checked before anything in `out_dir` is touched."""
    from edgeport.export.budget import budget_targets, check_budget
    from edgeport.export.export import ExportConfig, export_run
    from edgeport.runtime.report import write_report
    from edgeport.train.fit import TrainConfig, train

    train_cfg = train_cfg or TrainConfig()
    export_cfg = export_cfg or ExportConfig()
    train_cfg.validate()
    export_cfg.validate()
    from edgeport.export.calibration_curve import check_curve

    check_curve(export_cfg, recipe)  # a curve without a calibrated target: say so before training
    if import_cfg is not None:
        import_cfg.validate()
        if train_cfg.strategy == "multi-worker":
            raise ConfigError("--strategy multi-worker trains in sync across machines; with --model FILE nothing is "
                              "trained here (fine-tunes run per variant: use --ray to spread them)")
    if executor is not None:
        executor.check(recipe, export_cfg, train_cfg.strategy, bench_cfg)
    if train_cfg.strategy == "multi-worker":
        from edgeport.train.distribute import distribution, output_dir

        dist = distribution(train_cfg.strategy)
        if not dist.chief:  # every worker trains and fine-tunes in sync, into a temporary folder; the chief reports
            t0 = time.perf_counter()
            with output_dir(dist, out_dir) as scratch:
                train(train_cfg, scratch)
                export_run(scratch, export_cfg, recipe=recipe, strategy=train_cfg.strategy)
            return {"run": Path(out_dir).name, "worker": True, "artifacts": [],
                    "pipeline_seconds": round(time.perf_counter() - t0, 1)}
    targets = budget_targets(export_cfg, recipe)  # what a --max-drop acts on: checked before anything is replaced
    created = not Path(out_dir).exists()
    out = files.ensure_writable_dir(out_dir)
    t0 = time.perf_counter()
    try:
        if import_cfg is not None:
            from edgeport.train.bring import import_model

            # replaces an earlier run's files once the model, the data and the budget are checked
            import_model(import_cfg, out, check=import_checks(export_cfg, recipe))
        else:
            check_budget(export_cfg, targets, lambda: load_dataset(train_cfg.data))
            RunFolder(out).clear_run()
            train(train_cfg, out)
        export_run(out, export_cfg, recipe=recipe, executor=executor, strategy=train_cfg.strategy)
        report = evaluate_run(out, bench_cfg, executor=executor)
    except BaseException:
        if created and not any(p.is_file() for p in out.rglob("*")):  # failed before writing anything: no husk
            shutil.rmtree(out, ignore_errors=True)
        raise
    report["pipeline_seconds"] = round(time.perf_counter() - t0, 1)
    write_report(out, report)
    return report


def import_checks(export_cfg, recipe=None):
    """What import_model checks before it replaces an earlier run's files: every keep_float name is a layer of the
    model, and the data can measure a --max-drop budget."""
    from edgeport.export.budget import budget_targets, check_budget
    from edgeport.export.recipe import check_keep_float_source

    targets = budget_targets(export_cfg, recipe)

    def check(model, data) -> None:
        check_keep_float_source(model, export_cfg, recipe)
        check_budget(export_cfg, targets, lambda: data)

    return check


def evaluate_run(run_dir: str | Path, bench_cfg: BenchConfig | None = BenchConfig(),
                 answers: Answers | None = None, executor=None) -> dict:
    """Evaluate every artifact in the run's manifest on the test set (and benchmark it unless bench_cfg is None).

    An artifact that fails to load or run gets status "failed" with the error; the others still run. So does each
    artifact of a recipe variant the export could not make (the manifest's "failed"). `executor` evaluates each
    file as a task and benchmarks them all on one node (`executor.evaluate`); report["bench_executor"] says where
    the benchmarks ran. `answers`, when given, receives each file's top-1 classes and the test set.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeport.runtime.bench import Interrupted, benchmark_file, headline
    from edgeport.runtime.fidelity import compare, confusion_matrix

    run = RunFolder(run_dir)
    manifest = run.manifest()
    data = run.dataset()
    images, labels = data.test_images, data.test_labels
    reference = run.reference(labels)
    model_file = run.model_path
    ref_accuracy = float((reference.argmax(1) == labels).mean()) if reference is not None else None
    rows, predictions = [], {} if reference is None else {"reference": reference.argmax(1)}
    cfg = run.data_config
    report = {
        "run": run.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": _dataset_info(data, cfg, cfg.test_limit),
        "input_spec": run.spec.to_dict(),
        "notes": list(data.notes) + [n for n in run.record.get("notes") or [] if n not in data.notes],
        "reference": {"accuracy": ref_accuracy, "path": model_file.name if model_file.exists() else None,
                      "bytes": _size(model_file), "gzip_bytes": files.gzip_size(model_file) if model_file.is_file()
                      else None, "model_name": run.model_name, "format": run.reference_format,
                      "origin": run.record.get("origin", "trained")},
        "bench": None if bench_cfg is None else bench_cfg.to_dict(),
        "artifacts": rows,
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": cpu_count(), **(manifest.get("packages") or {})},
    }
    if (run.path / CALIBRATION_CURVE).is_file():  # written by export --calibration-curve
        report["calibration_curve"] = files.read_json(run.path / CALIBRATION_CURVE, "calibration curve")
    if reference is not None:
        ref_confusion = confusion_matrix(labels, reference.argmax(1), max(reference.shape[1], int(labels.max()) + 1))
        report["reference"]["confusion"] = ref_confusion.tolist()
        report["reference"]["per_class_accuracy"] = [float(ref_confusion[i, i] / t) if t else None
                                                     for i, t in enumerate(ref_confusion.sum(axis=1))]
    if executor is not None:
        done, found, report["bench_executor"] = executor.evaluate(run.path, manifest["artifacts"], images, labels,
                                                                  reference, bench_cfg)
        rows += done
        predictions |= found
    else:
        if bench_cfg is not None:
            report["bench_executor"] = {"kind": "local", "host": platform.node(), "cpus": cpu_count()}
        console = Console(stderr=True)  # stdout is the table or --json; a log (not a terminal) gets no bar
        with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as progress:
            for entry in manifest["artifacts"]:
                task = progress.add_task(f"eval {entry['name']}", total=len(images))
                row = artifact_row(entry)
                try:
                    source = source_probs(run.path, entry, labels, reference)
                    row, found = evaluate_artifact(run.path / entry["path"], entry, images, labels, source,
                                                   progress=lambda n, t=task: progress.update(t, completed=n))
                    if found is not None:
                        predictions[entry["name"]] = found
                        if bench_cfg is not None:
                            progress.update(task, description=f"bench {entry['name']}")
                            row["benchmark"] = benchmark_file(run.path / entry["path"], images, bench_cfg)
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
    rows += failed_variant_rows(manifest)
    report["fidelity"] = compare(predictions, labels)
    if "reference" in predictions:
        add_delta_stats(report, predictions, labels)
    if answers is not None:
        answers.predictions.update((k, v) for k, v in predictions.items() if k != "reference")
        answers.dataset = data
    return report


def add_delta_stats(report: dict, predictions: dict, labels) -> None:
    """Give each evaluated row its accuracy change against the reference: points, 95% paired bootstrap CI,
    McNemar's exact p-value; and the report the smallest change its test set can resolve."""
    from dataclasses import asdict

    from edgeport.runtime.stats import delta_stats, resolvable_points

    ref_correct = predictions["reference"] == labels
    for row in report["artifacts"]:
        if row.get("status") == "ok" and row["name"] in predictions:
            stats = delta_stats(ref_correct, predictions[row["name"]] == labels)
            row["delta"] = {**asdict(stats), "significant": stats.significant}
    report["reference"]["resolvable_points"] = resolvable_points(len(labels))


def source_probs(run_path: Path, entry: dict, labels, reference):
    """What an artifact's fidelity is measured against: the test-set probabilities of the Keras model it was
    converted from (a fine-tuned variant's, lineage source_predictions), else the run's reference."""
    rel = (entry.get("lineage") or {}).get("source_predictions")
    if not rel or reference is None:
        return reference
    path = run_path / rel
    try:
        with np.load(path, allow_pickle=False) as z:
            probs, source_labels = z["probs"], z["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise OutputError(f"{path}: unreadable source predictions ({exc})") from None
    n = len(labels)  # a run evaluated on the first N test images compares with the first N predictions
    if len(source_labels) < n or not np.array_equal(source_labels[:n], labels):
        raise OutputError(f"{path}: source predictions were made on a different test set")
    return probs[:n]


def artifact_row(entry: dict) -> dict:
    """A report row's manifest part: name, format, precision, path, sizes and lineage."""
    row = {k: entry.get(k) for k in ("name", "format", "precision", "path", "bytes", "gzip_bytes")}
    row["lineage"] = entry.get("lineage", {})
    if (row["lineage"].get("conversion") or {}).get("kept_float"):
        row["precision"] = "mixed"  # int8 with layers kept in float: what file_precision calls the file itself
    if entry.get("sensitivity") is not None:
        row["sensitivity"] = entry["sensitivity"]
    return row


def evaluate_artifact(path: str | Path, entry: dict, images, labels, reference, progress=None) -> tuple[dict, object]:
    """Evaluate one file: its report row (status "ok" or "failed" with the error) and its top-1 predictions
    (None when it failed to load or run)."""
    from edgeport.runtime import load

    row = artifact_row(entry)
    try:
        ev = load(path).evaluate(images, labels, reference, progress=progress)
    except EdgeportError as exc:
        return row | {"status": "failed", "error": str(exc)}, None
    return row | {"status": "ok", **ev.to_dict()}, ev.predictions


def failed_variant_rows(manifest: dict) -> list[dict]:
    """A failed row for every file the export did not make (the manifest's "failed"): a target that failed the
    validation gate, or every file of a recipe variant that could not be made."""
    rows = []
    for f in manifest.get("failed") or []:
        why = f"not exported: {f['error']}" if f.get("target") else f"variant {f['variant']} was not made: {f['error']}"
        for a in f.get("artifacts", []):
            rows.append({"name": a["name"], "format": a.get("format"), "precision": a.get("precision"), "path": None,
                         "bytes": None, "gzip_bytes": None, "status": "failed", "error": why,
                         "lineage": {"training": {"method": f.get("method"), "variant": f["variant"]},
                                     "executor": f.get("executor")}})
    return rows


def evaluate_files(paths: list, data: DataConfig | str | None = None, bench_cfg: BenchConfig | None = None,
                   limit: int | None = None, answers: Answers | None = None) -> dict:
    """Evaluate (and benchmark) loose model files, ours or not, on a labelled test set.

    `data` None: the bundled MNIST when the file takes its 28x28x1 images; for any other model there is nothing
    to measure accuracy on, so only the benchmark runs (latency, throughput, size, MACs on inputs of the model's
    own shape) and the report says accuracy was not measured. Given `data` must fit the model: an error if not.
    One file that fails raises its one-line error; among several, a file that fails to load or run gets status
    "failed" with the error and the others still run (as a run folder's artifacts do).
    `answers`, when given, receives each file's top-1 classes and the (last) test set."""
    from edgeport.runtime import load
    from edgeport.runtime.bench import Interrupted, benchmark_file, check_images_fit, headline
    from edgeport.runtime.fidelity import compare

    cfg = data if isinstance(data, DataConfig) else DataConfig(path=None if data is None else str(data))
    rows, predictions, notes = [], {}, []
    report = {"run": ", ".join(str(p) for p in paths), "dataset": None, "reference": {},
              "bench": None if bench_cfg is None else bench_cfg.to_dict(), "artifacts": rows, "notes": notes}
    dataset = None
    for p in paths:
        row = {"name": Path(p).name, "path": str(p)}
        try:
            model = load(p)
            notes += [n for n in model.spec_notes if n not in notes]
            if dataset is None or tuple(dataset.test_images.shape[1:]) != model.spec.image_shape:
                dataset = _data_for(model, cfg, limit, explicit=data is not None)
                notes += [n for n in (dataset.notes if dataset is not None else ()) if n not in notes]
            row.update(format=model.format, precision=file_precision(p, model.input.dtype),
                       bytes=Path(p).stat().st_size, gzip_bytes=files.gzip_size(p), status="ok",
                       input_spec=model.spec.to_dict())
            if dataset is not None:
                check_images_fit(model, dataset.test_images, dataset.source, cfg.path is None)
                ev = model.evaluate(dataset.test_images, dataset.test_labels)
                row.update(ev.to_dict())
                predictions[row["name"]] = ev.predictions
                report["dataset"] = _dataset_info(dataset, cfg, limit)
            else:
                row["accuracy_note"] = "not measured: no labelled data for this model's input (give --data)"
                if row["accuracy_note"] not in notes:
                    notes.append(f"{Path(p).name}: accuracy {row['accuracy_note']}")
            if bench_cfg is not None:
                try:
                    row["benchmark"] = benchmark_file(p, None if dataset is None else dataset.test_images, bench_cfg)
                except KeyboardInterrupt as exc:
                    partial = getattr(exc, "partial", None)
                    rows.append(row | {"status": "interrupted", "benchmark": partial,
                                       **(headline(partial) if partial else {})})
                    raise Interrupted(report | {"interrupted": True}) from None
                row.update(headline(row["benchmark"]))
        except EdgeportError as exc:
            if len(paths) == 1:
                raise
            row.update(status="failed", error=str(exc))
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    if predictions and dataset is not None and len(predictions) == len(ok):
        report["fidelity"] = compare(predictions, dataset.test_labels)
    if answers is not None:
        answers.predictions.update(predictions)
        answers.dataset = dataset
    return report


def file_precision(path: str | Path, io_dtype: str) -> str:
    """A loose file's precision, which no manifest records: "int8" when int8 ops do all its multiply-accumulates,
    "mixed" when some, else its input dtype. Its input dtype alone calls an ONNX QDQ or a float-I/O TFLite int8
    file float32."""
    from edgeport.runtime.macs import count_macs

    count = count_macs(path)
    if not count.macs or not count.int8_macs:
        return io_dtype
    return "int8" if count.int8_macs == count.macs else "mixed"


def _data_for(model, cfg: DataConfig, limit: int | None, explicit: bool):
    """The labelled test set to evaluate `model` on, or None when no data was given and MNIST does not fit it."""
    from dataclasses import replace

    spec = model.spec
    if not explicit:
        if spec.image_shape != (28, 28, 1) or model.num_classes != 10:
            return None
        return load_dataset(cfg, val_size=0, test_limit=limit)
    fitted = replace(cfg, image_size=cfg.image_size or (spec.height, spec.width), channels=cfg.channels or
                     spec.channels, preprocessing=cfg.preprocessing or spec.preprocessing)
    data = load_dataset(fitted, val_size=0, test_limit=limit)
    if data.num_classes > model.num_classes:
        raise InputError(f"{cfg.path}: has {data.num_classes} classes but {model.path.name} gives "
                         f"{model.num_classes} outputs")
    return data


def _dataset_info(data, cfg: DataConfig, test_limit: int | None) -> dict:
    return {"source": data.source, "kind": data.kind, "test_images": int(len(data.test_images)),
            "subset": test_limit is not None, "test_limit": test_limit, "config": cfg.to_dict(),
            "notes": list(data.notes)}


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None
