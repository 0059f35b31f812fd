"""Bring your own model: make a run folder's reference from a model file instead of training one.

`edgeport run --model FILE --data PATH` and `edgeport export --model FILE --data PATH --out DIR` call
`import_model`, which writes what `edgeport train` writes, so every later stage works unchanged:

    source/NAME         a copy of the file (or SavedModel folder) as given
    model.keras         the reference as a tf-keras model, when it is one or the Keras 3 bridge rebuilt it
                        (train/bridge.py: proven equal, max |dp| <= 1e-5); the training-time methods need it
    reference.npz       the ORIGINAL model's test-set probabilities, the yardstick of every exported file
    train.json          origin "imported": the source file and its sha256, its format, the bridge's result,
                        the data settings, the input spec, the dataset fingerprint (written last)

Formats (`model_format`): a Keras 3 `.keras`, a tf-keras `.keras` or `.h5`, a SavedModel folder. Keras files
load in safe mode (no code from the file runs); an .h5 holding a Lambda layer is refused for the same reason. A
Keras 3 model the bridge cannot rebuild, and a SavedModel that is not a tf-keras model, stay the reference as
they are: post-training targets convert them directly (TFLite from the model or its serving signature, ONNX
through tf2onnx.convert.from_function), training-time methods are refused with the bridge's reason.

The input spec: size, channels and layout from the model's input, class names from the data (folder names,
--labels), and the pixel scaling from `ImportConfig` (scale, mean, std), because a model file does not say how
its pixels were scaled. Unset, a model whose first layer is Rescaling takes raw pixels (scale 1), any other
pixels / 255; either way a note says which was assumed, and a reference accuracy near chance says to check it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeport.core import files
from edgeport.core.data import DataConfig, iter_batches, load_dataset
from edgeport.core.environment import package_versions
from edgeport.core.errors import ConfigError, DataError, ModelFileError
from edgeport.core.run import DEFAULT_MODEL, TRAIN_RECORD, RunFolder, data_record
from edgeport.core.spec import spec_for_tensor

FORMATS = ("keras3", "tf_keras", "saved_model")
SOURCE_DIR = "source"  # the imported file's copy, inside the run folder
SERVING_KEYS = ("serving_default", "serve")  # tf.saved_model / Keras 3 `model.export` signature names, in order


@dataclass(frozen=True)
class ImportConfig:
    model: str  # a .keras (Keras 3 or tf-keras), an .h5, or a SavedModel folder
    data: DataConfig = field(default_factory=DataConfig)  # the labelled images; resized to the model's input
    scale: float | None = None  # pixel (0..255) * scale; None: 1 if the model starts with Rescaling, else 1/255
    mean: tuple[float, ...] | None = None  # subtracted after scaling (one value or one per channel); None: 0
    std: tuple[float, ...] | None = None  # divided after the mean; None: 1
    bridge: bool = True  # rebuild a Keras 3 model in tf-keras (training-time methods need it)

    def validate(self) -> None:
        self.data.validate()
        if not Path(self.model).expanduser().exists():
            raise ModelFileError(f"{self.model}: model file not found")
        if self.scale is not None and not (np.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"--input-scale must be a number > 0, got {self.scale!r}")


@dataclass(frozen=True)
class ImportResult:
    model_path: Path  # the run's reference model (model.keras, or the copy under source/)
    model_format: str  # keras3 | tf_keras | saved_model
    test_accuracy: float
    bridged: bool  # True: model.keras is the tf-keras rebuild of a Keras 3 model
    notes: tuple[str, ...]  # what was assumed or could not be done, to say once
    seconds: float


# ---- what the file is, and loading it --------------------------------------------------------------------------


def model_format(path: str | Path) -> str:
    """keras3 | tf_keras | saved_model, from the file itself; ModelFileError for anything else."""
    p = Path(path)
    if p.is_dir():
        if (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file():
            return "saved_model"
        raise ModelFileError(f"{p}: a folder, but not a SavedModel (no saved_model.pb in it)")
    if not p.is_file():
        raise ModelFileError(f"{p}: model file not found")
    suffix = p.suffix.lower()
    if suffix == ".keras":
        try:
            with zipfile.ZipFile(p) as z:
                meta = json.loads(z.read("metadata.json"))
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            raise ModelFileError(f"{p}: not a loadable .keras file ({_first_line(exc)})") from None
        major = str(meta.get("keras_version", "")).split(".")[0]
        return "keras3" if major.isdigit() and int(major) >= 3 else "tf_keras"
    if suffix in (".h5", ".hdf5"):
        return "tf_keras"
    raise ModelFileError(f"{p}: unknown model format {p.suffix or '(no suffix)'!r}; expected a .keras or .h5 file, "
                         "or a SavedModel folder (for a .tflite/.onnx file use `edgeport bench`/`eval`)")


def load_any(path: str | Path, fmt: str | None = None):
    """The model in `path` as an object the converters take: a tf-keras model, a Keras 3 model, or a ServingModel."""
    from edgeport.train.tf import import_tf

    p = Path(path)
    fmt = fmt or model_format(p)
    tf, tf_keras = import_tf()
    if fmt == "keras3":
        import keras

        return _loading(p, lambda: keras.saving.load_model(p, safe_mode=True, compile=False))
    if fmt == "tf_keras" and p.suffix.lower() == ".keras":
        return _loading(p, lambda: tf_keras.models.load_model(p, safe_mode=True, compile=False))
    if fmt == "tf_keras":
        _refuse_h5_code(p)
        try:
            return _loading(p, lambda: tf_keras.models.load_model(p, compile=False))
        except ModelFileError:  # an .h5 written by Keras 3: it reads its own
            import keras

            return _loading(p, lambda: keras.saving.load_model(p, safe_mode=True, compile=False))
    if (p / "keras_metadata.pb").is_file():  # a tf-keras SavedModel: revived as a Keras model (no Python code runs)
        try:
            return _loading(p, lambda: tf_keras.models.load_model(p, compile=False))
        except ModelFileError:
            pass  # custom layers: its serving signature still runs
    return ServingModel(p, tf)


def _loading(path: Path, load):
    try:
        return load()
    except Exception as exc:  # Keras raises many types; the user needs the file and one line
        raise ModelFileError(_load_error(path, exc)) from None


def _load_error(path: Path, exc: BaseException) -> str:
    """One line for a model that does not load; an unregistered custom layer is named with the remedy."""
    import re

    full = str(exc)
    found = re.search(r"(?:Could not locate class|Unknown layer:?)\s*'?([A-Za-z_][\w.>]*)'?", full)
    if found or "custom" in full.lower():
        what = f"custom layer class {found.group(1)!r}" if found else "a custom layer"
        return (f"{path}: uses {what}, which is not registered: decorate it with "
                "@keras.saving.register_keras_serializable() and import it before loading (Python API), "
                "or export the model as a SavedModel")
    return f"{path}: not a loadable Keras model ({_first_line(exc)})"


def _refuse_h5_code(path: Path) -> None:
    """An .h5 model config with a Lambda layer carries Python bytecode that loading would run: refuse it."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except OSError as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 model ({_first_line(exc)})") from None
    if config is None:
        raise ModelFileError(f"{path}: an HDF5 file without a model in it (weights only?); give the whole model")
    if isinstance(config, bytes):
        config = config.decode("utf-8", "replace")
    if '"class_name": "Lambda"' in config:
        raise ModelFileError(f"{path}: has a Lambda layer, whose Python code loading would run; edgeport loads "
                             "models in safe mode only (save it as .keras without the Lambda, or as a SavedModel)")


class ServingModel:
    """A SavedModel's serving signature with what the converters ask of a Keras model: `input_shape`,
    `output_shape`, `layers` (none: it is a graph), `predict`, calling it. `saved_model_dir` and `signature_key`
    tell the TFLite converter to read the folder itself; `trackable` keeps its variables alive."""

    def __init__(self, path: str | Path, tf):
        self.path = self.saved_model_dir = Path(path)
        self.name = self.path.name
        try:
            self.trackable = tf.saved_model.load(str(self.path))
        except Exception as exc:
            raise ModelFileError(f"{self.path}: not a loadable SavedModel ({_first_line(exc)})") from None
        sigs = dict(self.trackable.signatures)
        key = next((k for k in SERVING_KEYS if k in sigs), next(iter(sigs), None) if len(sigs) == 1 else None)
        if key is None:
            raise ModelFileError(f"{self.path}: SavedModel has no serving signature (found: "
                                 f"{', '.join(sigs) or 'none'}); save it with a `serving_default` signature")
        self.signature_key, self._fn = key, sigs[key]
        args, kwargs = self._fn.structured_input_signature
        inputs = list(args) + list(kwargs.values())
        outputs = self._fn.structured_outputs
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFileError(f"{self.path}: signature {key!r} takes {len(inputs)} input(s) and gives "
                                 f"{len(outputs)} output(s); edgeport takes one image in and one class vector out")
        self._input_name = next(iter(kwargs), None)
        self._tf = tf
        self.input_shape = tuple(inputs[0].shape.as_list())
        self.output_shape = tuple(next(iter(outputs.values())).shape.as_list())
        self.layers: list = []

    def __call__(self, x, training: bool = False):
        out = self._fn(**{self._input_name: x}) if self._input_name else self._fn(x)
        return next(iter(out.values()))

    def predict(self, x: np.ndarray, batch_size: int = 256, verbose: int = 0) -> np.ndarray:
        outs = [np.asarray(self(self._tf.constant(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, *self.output_shape[1:]), np.float32)

    def count_params(self) -> int | None:
        return None


def is_tf_keras(model) -> bool:
    """True for a model of tf-keras (Keras 2), the only kind tfmot and tf2onnx.from_keras take."""
    return type(model).__module__.startswith("tf_keras")


# ---- importing -------------------------------------------------------------------------------------------------


def import_model(cfg: ImportConfig, out_dir: str | Path, check=None) -> ImportResult:
    """Make `out_dir` a run folder whose reference is the model in `cfg.model` (see the module docstring).
    `check`, when given, is called with the loaded model and Dataset before anything in `out_dir` is replaced (the
    pipeline checks there that a --max-drop budget can be measured on the data and keep_float names its layers)."""
    from edgeport.runtime.base import as_probabilities
    from edgeport.train.bridge import BridgeError, is_keras3, to_tf_keras

    cfg.validate()
    t0 = time.perf_counter()
    src = Path(cfg.model).expanduser().resolve()
    fmt = model_format(src)
    print(f"import {src.name}: {fmt.replace('_', '-')} model", file=sys.stderr)
    model = load_any(src, fmt)
    if is_keras3(model):
        fmt = "keras3"  # an .h5 that Keras 3 wrote
    spec, data_cfg = _spec_and_data(model, cfg, src.name)
    data = load_dataset(data_cfg)
    notes = list(data.notes)
    classes = int(model.output_shape[-1])
    if data.num_classes != classes:
        names = ", ".join(data.spec.labels[:6]) + (", ..." if data.num_classes > 6 else "")
        raise DataError(f"{data.source}: has {data.num_classes} classes ({names}) but {src.name} gives {classes} "
                        "outputs; the classes must match the model's outputs, in order")
    spec = spec.replace(labels=data.spec.labels, preprocessing=data.spec.preprocessing, resize=data.spec.resize)
    notes += _scale_notes(model, cfg, spec)
    probs = np.concatenate([as_probabilities(np.asarray(model.predict(spec.normalise(b), verbose=0)))
                            for b in iter_batches(data.test_images, 2048)] or [np.zeros((0, classes), np.float32)])
    accuracy = float((probs.argmax(1) == data.test_labels).mean()) if len(probs) else float("nan")
    if len(probs) and accuracy < min(1.0, 2.0 / classes):
        where = "below" if accuracy < 1.0 / classes else "near"
        notes.append(f"{src.name} gets {accuracy:.1%} on {data.source}, {where} chance for {classes} classes: "
                     "check the pixel scaling (--input-scale, --mean, --std) and that the class order matches the "
                     "model's training (class folders are read in sorted order; the model may have used another)")

    if check is not None:
        check(model, data)
    out = files.ensure_writable_dir(out_dir)
    run = RunFolder(out)
    run.clear_run(keep=src)  # an earlier run's files (other model, other targets) must not pass for this one's
    copy = _copy_source(src, out / SOURCE_DIR)
    bridge, model_path = None, copy
    if fmt == "keras3" and cfg.bridge:
        sample = _bridge_sample(spec, data)
        try:
            result = to_tf_keras(model, sample)
            _save_keras(result.model, out / DEFAULT_MODEL)
            bridge, model_path = {"ok": True, **result.to_dict()}, out / DEFAULT_MODEL
            print(f"bridge: rebuilt in tf-keras, {result.layers} layers, max |dp| {result.max_abs_diff:.1e} on "
                  f"{result.images} images", file=sys.stderr)
            if result.renamed:
                shown = ", ".join(f"{user} -> {new}" for new, user in list(result.renamed.items())[:3])
                notes.append(f"{len(result.renamed)} layer name(s) repeat across nested blocks, so the flat tf-keras "
                             f"rebuild renames them: {shown}{', ...' if len(result.renamed) > 3 else ''} (all in "
                             "train.json bridge.renamed)")
        except BridgeError as exc:
            bridge = {"ok": False, "error": str(exc)}
            notes.append(f"the Keras 3 model stays as it is ({exc}): post-training targets convert it directly; "
                         "training-time methods (prune, qat, ...) need the tf-keras rebuild")
    elif is_tf_keras(model):
        if copy.suffix == ".keras":
            shutil.copyfile(copy, out / DEFAULT_MODEL)
        else:  # .h5 or a tf-keras SavedModel: the same model as a .keras file, which the later stages load
            _save_keras(model, out / DEFAULT_MODEL)
        model_path = out / DEFAULT_MODEL
    run.write_reference(probs, data.test_labels)
    files.write_json(out / TRAIN_RECORD, {
        "origin": "imported",
        "source": {"path": str(cfg.model), "copy": copy.relative_to(out).as_posix(), "format": fmt,
                   "sha256": files.sha256_path(copy), "keras_version": _keras_version(src, fmt)},
        "reference_format": "tf_keras" if model_path.name == DEFAULT_MODEL else fmt,
        "bridge": bridge,
        **data_record(data_cfg, data, out),
        "input_spec": spec.to_dict(),
        "model_name": src.name,
        "params": model.count_params(),
        "test_accuracy": accuracy,
        "val_accuracy": None,
        "model_path": model_path.relative_to(out).as_posix(),
        "model_sha256": files.sha256_path(model_path),
        "notes": notes,
        "packages": package_versions(),
    })
    return ImportResult(model_path, fmt, accuracy, bool(bridge and bridge["ok"]), tuple(notes),
                        time.perf_counter() - t0)


def _spec_and_data(model, cfg: ImportConfig, name: str):
    """The input spec the model's input tensor implies (with cfg's scaling), and the data settings that load images
    at that size and channel count."""
    shape = tuple(-1 if d is None else int(d) for d in model.input_shape)
    if len(shape) != 4:
        raise ModelFileError(f"{name}: input has shape {list(model.input_shape)}, not an image batch "
                             "(N, H, W, C) with 1 or 3 channels")
    out_shape = tuple(model.output_shape)
    if len(out_shape) != 2 or (out_shape[-1] or 0) < 2:
        raise ModelFileError(f"{name}: output has shape {list(out_shape)}; edgeport takes classifiers whose output is "
                             "one score per class (N, K), K >= 2")
    spec = spec_for_tensor(shape, name)
    h, w = (shape[1], shape[2]) if spec.layout == "NHWC" else (shape[2], shape[3])
    if h < 1 or w < 1:
        raise ModelFileError(f"{name}: takes images of any size ({list(model.input_shape)}); edgeport exports a fixed "
                             "size: save the model with a fixed input size")
    if cfg.data.image_size not in (None, (h, w)):
        raise ConfigError(f"--image-size {cfg.data.image_size[0]}x{cfg.data.image_size[1]} differs from what "
                          f"{name} takes ({h}x{w}); leave it out: images are resized to the model's input")
    if cfg.data.channels not in (None, spec.channels):
        raise ConfigError(f"--channels {cfg.data.channels} differs from what {name} takes ({spec.channels})")
    data_cfg = replace(cfg.data, image_size=(h, w), channels=spec.channels)
    scale = cfg.scale if cfg.scale is not None else (1.0 if _rescales_itself(model) else 1 / 255)
    spec = spec.replace(scale=scale, mean=cfg.mean or (0.0,), std=cfg.std or (1.0,))
    return spec, data_cfg


def _rescales_itself(model) -> bool:
    """True when the model's first layer after its input is Rescaling: it takes raw pixels."""
    layers = [layer for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]
    return bool(layers) and type(layers[0]).__name__ == "Rescaling"


def _scale_notes(model, cfg: ImportConfig, spec) -> list[str]:
    if cfg.scale is not None:
        return []
    if cfg.mean is not None or cfg.std is not None:
        how = "raw pixels 0..255" if spec.scale == 1.0 else "x / 255"
        return [f"pixels are {how}, then (x - mean) / std with mean {tuple(spec.mean)}, std {tuple(spec.std)} "
                "(--input-scale to change the first step)"]
    if spec.scale == 1.0:
        return ["the model starts with a Rescaling layer, so it gets raw pixels 0..255 (--input-scale to change)"]
    return ["pixels are scaled to [0, 1] (x / 255) for the model; a model file does not say how it was trained: "
            "give --input-scale (and --mean/--std) if it expects otherwise"]


def _bridge_sample(spec, data) -> np.ndarray:
    """What the bridge's equality check runs on: 64 real test images and 16 of uniform noise over the input range."""
    real = spec.normalise(np.asarray(data.test_images[:64]))
    noise = spec.normalise(np.random.default_rng(0).integers(0, 256, (16, *spec.image_shape), dtype=np.uint8))
    return np.concatenate([real, noise]).astype(np.float32)


def _copy_source(src: Path, dest_dir: Path) -> Path:
    """Copy the file (or SavedModel folder) into the run folder, atomically: a half copy never has the final name."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    if src.is_dir():
        tmp = dest_dir / f".{src.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    else:
        with files.atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    return dest


def _save_keras(model, path: Path) -> None:
    with files.atomic_path(path) as tmp:
        model.save(tmp)


def _keras_version(src: Path, fmt: str) -> str | None:
    if src.suffix.lower() != ".keras":
        return None
    try:
        with zipfile.ZipFile(src) as z:
            return json.loads(z.read("metadata.json")).get("keras_version")
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
