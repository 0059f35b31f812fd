"""Export a trained model to every requested target, validate each file, and write manifest.json.

Validate-after-write (after Optimum's exporters): each file is written to a temporary path, opened with
the TF-free runtime (TFLite: LiteRT loads and allocates it; ONNX: onnx.checker, then onnxruntime), and
its outputs are compared with the Keras model's on a sample of test images. Only then is it renamed into
place; a failure leaves no file behind.

The gate, per file (the README's "Validation gate"): ONNX files pass onnx.checker (full check); the file loads and
runs in the runtime; float targets stay within their `atol` of the Keras probabilities (1e-4 for float32, 1e-2
for float16 weights); quantised targets agree with Keras' top-1 class on at least their `min_agreement` (95%)
of the `validation_size` (256) test images. A target that fails is recorded as a `TargetFailure` (its one-line
reason) and the run's other targets go on; the manifest lists it under "failed".
"""

from __future__ import annotations

import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeport.core import files
from edgeport.core.environment import package_versions
from edgeport.core.errors import BudgetError, ConfigError, EdgeportError, ExportError
from edgeport.core.manifest import Artifact, write_manifest
from edgeport.core.metadata import file_metadata
from edgeport.core.run import RunFolder

ARTIFACTS_DIR = "artifacts"
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")  # onnxruntime.quantization's CalibrationMethod choices


@dataclass(frozen=True)
class ExportConfig:
    targets: tuple[str, ...] = ("tflite_fp32", "tflite_int8", "onnx_fp32")  # names from export.targets
    calibration_size: int = 500  # training images fed to the int8 calibrators
    calibration_source: str = "train"  # "train" (first N of the training split) or "val"
    validation_size: int = 256  # test images compared with Keras after each write
    calibration_method: str = "minmax"  # onnx_static_int8's calibrator: minmax | percentile | entropy (TFLite's
    # converter has one, absolute min/max, and no choice)
    calibration_curve: bool = False  # also convert each calibrated target with 10..1000 images, accuracy on val
    max_drop: float | None = None  # int8 budget, points below the float model on validation (export/budget.py)
    keep_float: tuple[str, ...] = ()  # Keras layers the mixed-capable int8 targets keep in float
    sensitivity: bool = True  # per-layer sensitivity of every int8 file (export/sensitivity.py)
    budget_size: int = 2000  # validation images the max_drop budget is measured on

    def validate(self) -> None:
        if self.calibration_size < 1:
            raise ConfigError(f"calibration_size must be >= 1, got {self.calibration_size}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ConfigError(f"unknown calibration method {self.calibration_method!r}; expected one of: "
                              f"{', '.join(CALIBRATION_METHODS)}")
        if self.calibration_source not in ("train", "val"):
            raise ConfigError(f"calibration_source must be 'train' or 'val', got {self.calibration_source!r}")
        if not self.targets:
            raise ConfigError("no export targets given")
        if self.max_drop is not None and not 0 <= self.max_drop < float("inf"):
            raise ConfigError(f"--max-drop is in percentage points and must be a finite number >= 0, got "
                              f"{self.max_drop}")


@dataclass
class ExportContext:
    """What converters may use: TensorFlow, the run (its data and input spec), settings. Built once per model."""

    tf: object
    cfg: ExportConfig
    run: RunFolder
    _calib: np.ndarray | None = field(default=None, repr=False)
    metadata: dict[str, str] = field(default_factory=dict)  # embedded in every file (edgeport.core.metadata)
    keep_float: tuple[str, ...] = ()  # layers the int8 converter now keeps in float (set by export/budget.py)
    cache: dict = field(default_factory=dict, repr=False)  # calibrated models, the budget split, the kept layers

    @property
    def spec(self):
        return self.run.spec

    def calibration_images(self) -> np.ndarray:
        """float32 model input, the first `calibration_size` images of the chosen split."""
        if self._calib is None:
            data = self.run.dataset()
            src = data.train_images if self.cfg.calibration_source == "train" else data.val_images
            if not len(src):
                raise ExportError(f"int8 calibration needs {self.cfg.calibration_source} images, and "
                                  f"{data.source} has none; give a dataset with a train split")
            self._calib = self.spec.normalise(src[: self.cfg.calibration_size])
            if len(src) < self.cfg.calibration_size:
                print(f"edgeport: note: --calibration-size {self.cfg.calibration_size}: the "
                      f"{self.cfg.calibration_source} split has {len(src)} images; calibrating on all of them",
                      file=sys.stderr)
        return self._calib

    def calibration_info(self, method: str) -> dict:
        """The calibration set for the lineage, and `method`: how the converter turned it into ranges."""
        return {"source": self.cfg.calibration_source, "size": int(len(self.calibration_images())),
                "dataset": self.run.dataset_label, "method": method}


@dataclass(frozen=True)
class TargetFailure:
    """A target that did not pass the gate (or did not convert): nothing of it is left in artifacts/."""

    name: str  # the artifact name it would have had (with the variant's prefix)
    target: str  # the target's registered name
    format: str
    precision: str
    error: str  # one line: which check failed and by how much
    kind: str = "gate"  # "gate": conversion or validation failed; "budget": --max-drop cannot be met (exit 2)

    def to_dict(self) -> dict:
        return asdict(self)


def export_model(model_path: str | Path, run: RunFolder | str | Path, cfg: ExportConfig = ExportConfig(),
                 training: dict | None = None, prefix: str = "",
                 failed: list[TargetFailure] | None = None) -> list[Artifact]:
    """Convert one model file to each target in `cfg.targets` into `run`'s artifacts/; return validated artifacts.

    The run folder's train.json gives the data (calibration, validation) and the input spec; a folder without
    one means the bundled MNIST. `failed`, when given, collects each target that fails (ExportError: conversion or
    the gate) and the other targets go on; None: the first failure raises."""
    from edgeport.export.budget import convert_within_budget
    from edgeport.export.sensitivity import file_sensitivity
    from edgeport.export.targets import get_target
    from edgeport.runtime import load
    from edgeport.runtime.base import as_probabilities
    from edgeport.train.compress import load_model  # .keras in safe mode, or a QAT weights pair
    from edgeport.train.tf import import_tf

    cfg.validate()
    targets = [get_target(t) for t in cfg.targets]  # unknown names fail before any work
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    out = files.ensure_writable_dir(run.path / ARTIFACTS_DIR)
    tf, _ = import_tf()
    model = load_model(model_path)
    spec = run.spec
    if tuple(model.input_shape[1:]) != spec.tensor_shape()[1:]:
        raise ExportError(f"{model_path}: takes input {list(model.input_shape)}, but the run's input spec says "
                          f"{list(spec.tensor_shape())}")
    ctx = ExportContext(tf=tf, cfg=cfg, run=run)
    data = run.dataset()
    sample = data.test_images[: cfg.validation_size]
    ref = as_probabilities(np.asarray(model.predict(spec.normalise(sample), verbose=0)))  # logits heads: softmax
    ctx.metadata = file_metadata(spec, (training or {}).get("model") or run.model_name, run.dataset_label)
    from edgeport.export.metadata import embed_metadata

    artifacts = []
    for target in targets:
        name = f"{prefix}{target.name}"
        final = out / f"{name}{target.suffix}"
        print(f"export {name}: {target.description}", file=sys.stderr)
        t0 = time.perf_counter()
        try:
            with files.atomic_path(final) as tmp:
                try:
                    conversion = convert_within_budget(target, model, tmp, ctx)
                except EdgeportError as exc:  # already one line naming the value (a budget, a layer, a split)
                    if type(exc) is ExportError and not str(exc).startswith((f"{name}:", f"{target.name}:")):
                        raise ExportError(f"{name}: {exc}") from None  # and the file it stopped
                    raise
                except Exception as exc:  # converters raise anything; the user needs the target and one line
                    raise ExportError(f"{name}: conversion failed ({_first_line(exc)})") from None
                metadata = embed_metadata(tmp, target.format, ctx.metadata)
                validation = _validate(tmp, target, load, sample, ref, name)
                described = load(tmp).describe()
                sensitivity = file_sensitivity(tmp, target, model, ctx) if cfg.sensitivity else None
        except ExportError as exc:
            if failed is None:
                raise
            print(f"edgeport: {exc} (recorded as failed; the other targets go on)", file=sys.stderr)
            final.unlink(missing_ok=True)  # an earlier export's file of that name would pass for this one
            failed.append(TargetFailure(name, target.name, target.format, target.precision, str(exc),
                                        kind="budget" if isinstance(exc, BudgetError) else "gate"))
            continue
        seconds = time.perf_counter() - t0
        artifacts.append(Artifact(
            name=name, format=target.format, precision=target.precision,
            path=str(final.relative_to(run.path)), bytes=final.stat().st_size,
            gzip_bytes=files.gzip_size(final), sha256=files.sha256_file(final),
            inputs=described["inputs"], outputs=described["outputs"],
            lineage={"source_model": str(Path(model_path).name), "training": training or {"method": "float"},
                     "conversion": {"target": target.name, **conversion, "seconds": round(seconds, 2)}},
            validation=validation,
            metadata=metadata,
            sensitivity=sensitivity,
        ))
        if cfg.max_drop is not None:  # the budget verify reads: the same points, on the test set
            artifacts[-1].lineage["max_drop"] = cfg.max_drop
    return artifacts


def failure_entry(f: TargetFailure, variant: str, method: str, executor: dict | None = None) -> dict:
    """The manifest's "failed" record of one target that failed the gate: the file it would have been, and why."""
    return {"variant": variant, "method": method, "target": f.target, "error": f.error, "kind": f.kind,
            "executor": executor or {},
            "artifacts": [{"name": f.name, "format": f.format, "precision": f.precision}]}


def _validate(path: Path, target, load, sample_u8, ref: np.ndarray, name: str) -> dict:
    """Structural check, then outputs against Keras on the sample: float within atol, int8 by top-1."""
    if target.format == "onnx":
        import onnx

        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as exc:
            raise ExportError(f"{name}: onnx.checker rejected the file ({_first_line(exc)})") from None
    try:
        probs = load(path).predict(sample_u8)
    except Exception as exc:
        raise ExportError(f"{name}: written file does not run in the runtime ({_first_line(exc)})") from None
    max_diff = float(np.abs(probs - ref).max())
    agreement = float((probs.argmax(1) == ref.argmax(1)).mean())
    result = {"images": len(sample_u8), "max_abs_diff": max_diff, "agreement": agreement, "atol": target.atol}
    if target.atol is not None and max_diff > target.atol:
        raise ExportError(f"{name}: outputs differ from Keras by {max_diff:.2e} > atol {target.atol:.0e}")
    if target.atol is None and agreement < target.min_agreement:  # float files: within atol is the test (near ties
        # in an untrained model's outputs flip top-1 on float rounding alone)
        raise ExportError(f"{name}: top-1 agrees with Keras on {agreement:.1%} of {len(sample_u8)} images, "
                          f"below {target.min_agreement:.0%}")
    return result


def export_run(run_dir: str | Path, cfg: ExportConfig = ExportConfig(), recipe=None, executor=None,
               strategy: str = "auto") -> Path:
    """Export the run folder's reference model to every target and write manifest.json; return its path.

    With a recipe (edgeport.export.recipe.Recipe) its variants replace `cfg.targets`: each training-time method
    is fine-tuned (under the tf.distribute `strategy`), then exported; `cfg` still gives the settings the recipe
    leaves unset. `executor` (edgeport.scale) does the work elsewhere: see export_recipe."""
    from edgeport.export.budget import MIXED_TARGETS, budget_targets, check_budget
    from edgeport.export.calibration_curve import before_export
    from edgeport.export.recipe import export_recipe, plain_recipe

    cfg.validate()
    run = RunFolder(run_dir)
    budgeted = budget_targets(cfg, recipe)
    check_budget(cfg, budgeted, run.dataset)  # before the earlier manifest goes
    if cfg.max_drop is not None and not budgeted:
        print(f"edgeport: note: --max-drop {cfg.max_drop:g}: no int8 target here to keep layers in float for "
              f"({', '.join(MIXED_TARGETS)}; QAT files keep their trained ranges), so it is only the budget "
              "`edgeport verify` checks", file=sys.stderr)
    before_export(run_dir, cfg, recipe)  # --calibration-curve's conversions, first: the manifest is written last
    if recipe is not None:
        return export_recipe(run_dir, recipe, cfg, executor=executor, strategy=strategy)
    run.start_export()
    t0 = time.perf_counter()
    if executor is None:
        failures: list[TargetFailure] = []
        artifacts = export_model(run.model_path, run, cfg, training={"method": "float", "model": run.model_name},
                                 failed=failures)
        where = {"kind": "local", "host": platform.node()}
        ran = where | {"node_id": None, "task_id": None, "seconds": round(time.perf_counter() - t0, 2)}
    else:  # the targets as one float variant; a model that cannot be loaded at all raises, as it does here
        (result,) = executor.make_variants(run, plain_recipe(cfg), cfg, strategy)
        if not result.ok:
            raise ExportError(result.error)
        artifacts, failures, where, ran = result.artifacts, result.failed_targets, executor.describe(), result.executor
    for art in artifacts:
        art.lineage["executor"] = ran
    return write_manifest(run.path, artifacts, **manifest_header(run), export_config=asdict(cfg),
                          executor=where, failed=[failure_entry(f, "float", "float", ran) for f in failures],
                          packages=package_versions())


def manifest_header(run: RunFolder) -> dict:
    """The manifest fields every export writes: when, by which command, from which model, for which input."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "source_model": {"path": run.model_path.name, "sha256": files.sha256_path(run.model_path),
                         "model_name": run.model_name, "test_accuracy": run.record.get("test_accuracy")},
        "input_spec": run.spec.to_dict(),
        "dataset": {"source": run.dataset_label, "kind": run.dataset().kind},
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
