"""How many calibration images does int8 need? Convert each calibrated target with 10 .. 1000 images, measure.

Every user asks it, and the answer depends on the model and the data, so it is measured, not guessed: the run's
reference model is converted once per size (capped at what the calibration split holds) for each calibrated
target asked for (tflite_int8, tflite_int8_float_io, tflite_int16x8, onnx_static_int8), with the run's
calibration method, and each file's accuracy is measured on the validation split (never test: the curve is
for choosing a setting) with the TF-free runtime. The files are written to a temporary folder and dropped; only
the points are kept, in calibration_curve.json beside the manifest (atomically), which the report plots.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edgeport.core import files
from edgeport.core.errors import ConfigError, ExportError
from edgeport.core.metadata import file_metadata
from edgeport.core.run import CALIBRATION_CURVE, RunFolder

CURVE_SIZES = (10, 50, 100, 500, 1000)  # calibration images per conversion


@dataclass(frozen=True)
class CurvePoint:
    target: str
    size: int  # calibration images used
    accuracy: float  # on the validation split
    seconds: float  # conversion + evaluation


def curve_targets(targets) -> tuple[str, ...]:
    """The calibrated targets among `targets`; a ConfigError naming the valid ones when there are none."""
    from edgeport.export.targets import TARGETS, get_target

    found = tuple(t for t in targets if get_target(t).calibrated)
    if not found:
        valid = ", ".join(sorted(n for n, t in TARGETS.items() if t.calibrated))
        raise ConfigError(f"--calibration-curve needs a calibrated int8 target of the reference model ({valid}); "
                          f"this export makes only {', '.join(targets) or 'nothing'}")
    return found


def reference_targets(cfg, recipe=None) -> tuple[str, ...]:
    """The targets made from the reference model itself: `cfg.targets`, or a recipe's float variants' targets."""
    if recipe is None:
        return tuple(cfg.targets)
    return tuple(t for v in recipe.variants if v.prefix == "" for t in v.targets)


def check_curve(cfg, recipe=None) -> tuple[str, ...]:
    """The targets a `cfg.calibration_curve` will convert (none without one); a ConfigError before any work when
    the reference model gets no calibrated target."""
    return curve_targets(reference_targets(cfg, recipe)) if cfg.calibration_curve else ()


def before_export(run_dir: str | Path, cfg, recipe=None) -> dict | None:
    """What an export does about calibration before converting: drop an older export's curve (it would describe
    other files), say when --calibration-method reaches no file, and make the curve when asked; return it."""
    (Path(run_dir) / CALIBRATION_CURVE).unlink(missing_ok=True)
    curve = check_curve(cfg, recipe)
    targets = cfg.targets if recipe is None else [t for v in recipe.variants for t in v.targets]
    if cfg.calibration_method != "minmax" and "onnx_static_int8" not in targets:
        print(f"edgeport: note: --calibration-method {cfg.calibration_method} is onnx_static_int8's; no file here "
              "uses it (TFLite's converter always takes the absolute min/max)", file=sys.stderr)
    return calibration_curve(run_dir, cfg, curve) if curve else None


def curve_sizes(available: int, sizes=CURVE_SIZES) -> list[int]:
    """`sizes` up to `available`, plus `available` itself when the split is smaller than the largest size."""
    out = [n for n in sizes if n <= available]
    if available < max(sizes) and available not in out:
        out.append(available)
    return out


def calibration_curve(run_dir: str | Path, cfg, targets, sizes=CURVE_SIZES) -> dict:
    """Convert the run's reference model to each calibrated target in `targets` at each size; return the curve
    (also written to the run folder as calibration_curve.json). `cfg` is the ExportConfig (source, method)."""
    from edgeport.export.export import ExportContext
    from edgeport.export.metadata import embed_metadata
    from edgeport.export.targets import get_target
    from edgeport.runtime import load
    from edgeport.runtime.base import as_probabilities
    from edgeport.train.compress import load_model
    from edgeport.train.tf import import_tf, quiet_conversion

    run = RunFolder(run_dir)
    names = curve_targets(targets)
    data = run.dataset()
    if not len(data.val_images):
        raise ExportError(f"--calibration-curve measures accuracy on the validation split, and {data.source} has "
                          "none; give --val-size N")
    split = data.train_images if cfg.calibration_source == "train" else data.val_images
    points_at = curve_sizes(len(split), sizes)
    if not points_at:
        raise ExportError(f"--calibration-curve: the {cfg.calibration_source} split of {data.source} has no images")
    tf, _ = import_tf()
    model = load_model(run.model_path)
    ref = as_probabilities(np.asarray(model.predict(run.spec.normalise(data.val_images), verbose=0)))
    metadata = file_metadata(run.spec, run.model_name, data.source)
    points = []
    with tempfile.TemporaryDirectory(prefix="edgeport-curve-") as tmp:
        for name in names:
            target = get_target(name)
            for n in points_at:
                t0 = time.perf_counter()
                ctx = ExportContext(tf=tf, cfg=replace(cfg, calibration_size=n), run=run, metadata=metadata)
                path = Path(tmp) / f"{name}_{n}{target.suffix}"
                try:
                    with quiet_conversion():  # converter chatter off the terminal, as for every export
                        target.fn(model, path, ctx)
                except ExportError:
                    raise
                except Exception as exc:  # converters raise anything; one line naming the target and size
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                    raise ExportError(f"calibration curve: {name} with {n} images failed ({first})") from None
                embed_metadata(path, target.format, metadata)
                accuracy = load(path).evaluate(data.val_images, data.val_labels).accuracy
                points.append(CurvePoint(name, n, float(accuracy), round(time.perf_counter() - t0, 2)))
                print(f"calibration curve {name}: {n} images -> {accuracy:.2%} on {len(data.val_labels)} val "
                      f"images ({points[-1].seconds:.1f} s)", file=sys.stderr)
                path.unlink(missing_ok=True)
    curve = {
        "split": "val", "images": int(len(data.val_labels)), "dataset": data.source,
        "calibration_source": cfg.calibration_source, "method": cfg.calibration_method,
        "reference_accuracy": float((ref.argmax(1) == data.val_labels).mean()),
        "sizes": points_at, "targets": list(names), "points": [asdict(p) for p in points],
        "notes": _notes(cfg, names),
    }
    files.write_json(run.path / CALIBRATION_CURVE, curve)
    return curve


def _notes(cfg, names) -> list[str]:
    notes = []
    if cfg.calibration_source == "val":
        notes.append("calibrated on validation images and measured on the same split: the curve is optimistic")
    if any(n.startswith("tflite") for n in names) and cfg.calibration_method != "minmax":
        notes.append(f"calibration method {cfg.calibration_method} applies to onnx_static_int8 only; TFLite's "
                     "converter always takes the absolute min/max")
    if cfg.max_drop is not None or cfg.keep_float:
        notes.append("every point is a full-int8 file: the layers --max-drop or keep_float keep in float in the "
                     "exported files are not kept here")
    return notes
