"""Export a trained model to every requested target, validate each file, and write manifest.json.

Validate-after-write (after Optimum's exporters): each file is written to a temporary path, opened with
the TF-free runtime (TFLite: LiteRT loads and allocates it; ONNX: onnx.checker, then onnxruntime), and
its outputs are compared with the Keras model's on a sample of test images. Only then is it renamed into
place; a failure raises ExportError naming the target and leaves no file behind.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeport.core import files
from edgeport.core.data import load_dataset, normalise
from edgeport.core.errors import ConfigError, ExportError
from edgeport.core.manifest import Artifact, write_manifest

ARTIFACTS_DIR = "artifacts"


@dataclass(frozen=True)
class ExportConfig:
    targets: tuple[str, ...] = ("tflite_fp32", "tflite_int8", "onnx_fp32")  # names from export.targets
    calibration_size: int = 500  # training images fed to the int8 calibrators
    calibration_source: str = "train"  # "train" (first N of the training split) or "val"
    validation_size: int = 256  # test images compared with Keras after each write

    def validate(self) -> None:
        if self.calibration_size < 1:
            raise ConfigError(f"calibration_size must be >= 1, got {self.calibration_size}")
        if self.calibration_source not in ("train", "val"):
            raise ConfigError(f"calibration_source must be 'train' or 'val', got {self.calibration_source!r}")
        if not self.targets:
            raise ConfigError("no export targets given")


@dataclass
class ExportContext:
    """What converters may use: TensorFlow, calibration data, settings. Built once per export."""

    tf: object
    cfg: ExportConfig
    data_dir: str | None
    _calib: np.ndarray | None = field(default=None, repr=False)
    calibration_image_shape: tuple[int, ...] | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # embedded in every file (export/metadata.py)

    def calibration_images(self) -> np.ndarray:
        """float32 (N, H, W, 1) in [0, 1], the first `calibration_size` images of the chosen split."""
        if self._calib is None:
            data = load_dataset(self.data_dir)
            src = data.train_images if self.cfg.calibration_source == "train" else data.val_images
            self._calib = normalise(src[: self.cfg.calibration_size])
        return self._calib

    def calibration_info(self) -> dict:
        return {"source": self.cfg.calibration_source, "size": int(len(self.calibration_images())),
                "dataset": self.data_dir or "bundled MNIST"}


def export_model(model_path: str | Path, run_dir: str | Path, cfg: ExportConfig = ExportConfig(),
                 data_dir: str | None = None, training: dict | None = None, prefix: str = "") -> list[Artifact]:
    """Convert one .keras model to each target in `cfg.targets`; return validated artifacts."""
    from edgeport.export.targets import get_target
    from edgeport.runtime import load
    from edgeport.train.compress import load_model  # .keras in safe mode, or a QAT weights pair
    from edgeport.train.tf import import_tf

    cfg.validate()
    targets = [get_target(t) for t in cfg.targets]  # unknown names fail before any work
    out = files.ensure_writable_dir(Path(run_dir) / ARTIFACTS_DIR)
    tf, _ = import_tf()
    model = load_model(model_path)
    ctx = ExportContext(tf=tf, cfg=cfg, data_dir=data_dir)
    data = load_dataset(data_dir, test_limit=cfg.validation_size)
    sample_u8 = data.test_images
    ref = model.predict(normalise(sample_u8), verbose=0)
    from edgeport.export.metadata import build_metadata, embed_metadata

    file_metadata = build_metadata(model, (training or {}).get("model"), data.source)  # embedded in every file
    ctx.metadata = file_metadata
    artifacts = []
    for target in targets:
        name = f"{prefix}{target.name}"
        final = out / f"{name}{target.suffix}"
        print(f"export {name}: {target.description}", file=sys.stderr)
        t0 = time.perf_counter()
        with files.atomic_path(final) as tmp:
            try:
                conversion = target.fn(model, tmp, ctx)
            except ExportError:
                raise
            except Exception as exc:  # converters raise anything; the user needs the target and one line
                raise ExportError(f"{name}: conversion failed ({_first_line(exc)})") from None
            metadata = embed_metadata(tmp, target.format, file_metadata)
            validation = _validate(tmp, target, load, sample_u8, ref, name)
            described = load(tmp).describe()
        seconds = time.perf_counter() - t0
        artifacts.append(Artifact(
            name=name, format=target.format, precision=target.precision,
            path=str(final.relative_to(Path(run_dir))), bytes=final.stat().st_size,
            gzip_bytes=files.gzip_size(final), sha256=files.sha256_file(final),
            inputs=described["inputs"], outputs=described["outputs"],
            lineage={"source_model": str(Path(model_path).name), "training": training or {"method": "float"},
                     "conversion": {"target": target.name, **conversion, "seconds": round(seconds, 2)}},
            validation=validation,
            metadata=metadata,
        ))
    return artifacts


def _validate(path: Path, target, load, sample_u8: np.ndarray, ref: np.ndarray, name: str) -> dict:
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
    if agreement < target.min_agreement:
        raise ExportError(f"{name}: top-1 agrees with Keras on {agreement:.1%} of {len(sample_u8)} images, "
                          f"below {target.min_agreement:.0%}")
    return result


def export_run(run_dir: str | Path, cfg: ExportConfig = ExportConfig(), recipe=None) -> Path:
    """Export the run folder's model.keras to every target and write manifest.json; return its path.

    With a recipe (edgeport.export.recipe.Recipe) its variants replace `cfg.targets`: each training-time method
    is fine-tuned, then exported; `cfg` still gives the settings the recipe leaves unset."""
    if recipe is not None:
        from edgeport.export.recipe import export_recipe

        return export_recipe(run_dir, recipe, cfg)
    run = Path(run_dir)
    train_info = files.read_json(run / "train.json", "training record (train.json)") if (run / "train.json").exists() \
        else {}
    data_dir = (train_info.get("config") or {}).get("data_dir")
    model_path = run / "model.keras"
    artifacts = export_model(model_path, run, cfg, data_dir=data_dir,
                             training={"method": "float", "model": train_info.get("model_name")})
    from edgeport.core.environment import package_versions

    return write_manifest(run, artifacts, **manifest_header(model_path, train_info), export_config=asdict(cfg),
                          packages=package_versions())


def manifest_header(model_path: Path, train_info: dict) -> dict:
    """The manifest fields every export writes: when, by which command, from which model."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "source_model": {"path": model_path.name, "sha256": files.sha256_file(model_path),
                         "model_name": train_info.get("model_name"), "test_accuracy": train_info.get("test_accuracy")},
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
