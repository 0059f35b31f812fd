"""The metadata every exported file carries about itself, so a .tflite or .onnx copied alone still explains itself.

One flat map of strings, the same keys in every format (export/metadata.py embeds it: ONNX `metadata_props`,
a TFLite metadata entry named "edgeport" holding it as UTF-8 JSON; the runtime reads it back):

    producer       "edgeport 0.1.0"
    model_name     the registered model ("default", "mobilenet_v2", ...) or the imported file's name
    dataset        where the training images came from ("bundled MNIST", a folder, a .npz)
    image_shape    JSON [H, W, C] of one input image            \\
    layout         "NHWC" or "NCHW"                              |
    input_scale    "1/255": pixels (0..255) are multiplied by it |  the input spec
    norm_mean      then (x - norm_mean) / norm_std: one number,  |  (edgeport.core.spec.InputSpec)
    norm_std         or a JSON list of one per channel           |
    labels         JSON list of class names, index = output      |
    preprocessing  "mnist" | "resize" | "none" (core/images.py)  |
    resize         "pad" | "crop" | "stretch"                   /
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from edgeport.core.errors import ConfigError, ModelFileError
from edgeport.core.spec import InputSpec, spec_for_tensor

TFLITE_METADATA_NAME = "edgeport"  # the name of our entry in a TFLite model's metadata list
REQUIRED = ("labels", "input_scale", "norm_mean", "norm_std")  # what makes a file's metadata "ours"


def producer() -> str:
    try:
        return f"edgeport {version('edgeport')}"
    except PackageNotFoundError:
        return "edgeport"


def file_metadata(spec: InputSpec, model_name: str | None, dataset: str | None) -> dict[str, str]:
    """The map to embed in every file exported from one model."""
    return {"producer": producer(), "model_name": model_name or "", "dataset": dataset or "", **spec.to_metadata()}


def has_edgeport_metadata(metadata: dict[str, str]) -> bool:
    """True when a file carries the keys the runtime relies on (labels and normalisation)."""
    return all(k in metadata for k in REQUIRED)


def spec_of(metadata: dict[str, str], tensor_shape: tuple[int, ...], num_classes: int,
            name: str = "model") -> tuple[InputSpec, list[str]]:
    """The input spec of a model file: its metadata over what its input tensor shows; plus notes on every default
    taken (a file without our metadata, labels that do not fit the outputs), for the caller to say once.

    A file whose metadata contradicts its own tensor (another size or channel count) is damaged: ModelFileError."""
    base = spec_for_tensor(tensor_shape, name)
    notes = []
    try:
        spec = InputSpec.from_metadata(metadata, fallback=base)
    except ConfigError as exc:
        raise ModelFileError(f"{name}: {exc}") from None
    want = spec.tensor_shape()[1:] if len(tensor_shape) == 4 else (spec.height, spec.width)
    if spec.channels != 1 and len(tensor_shape) == 3 or any(
            t > 0 and t != w for t, w in zip(tensor_shape[1:], want, strict=False)):
        raise ModelFileError(f"{name}: its metadata says input {list(spec.tensor_shape())} but its input tensor is "
                             f"{list(tensor_shape)}")
    if "image_shape" not in metadata and any(d <= 0 for d in tensor_shape[1:]):
        notes.append(f"{name} accepts any image size; using {spec.height}x{spec.width}")
    if not has_edgeport_metadata(metadata):
        what = "MNIST defaults (labels 0-9, pixels / 255, MNIST-style preprocessing)" if spec.preprocessing == "mnist" \
            else f"pixels / 255, {spec.height}x{spec.width}x{spec.channels} {spec.layout}, 'resize' preprocessing"
        notes.append(f"{name} carries no edgeport metadata: assuming {what}")
        if spec.preprocessing == "mnist" and num_classes == 10:
            spec = spec.with_labels([str(i) for i in range(10)])
    if spec.labels and len(spec.labels) != num_classes:
        notes.append(f"{name}: its {len(spec.labels)} labels do not fit its {num_classes} outputs; showing class "
                     "indices")
        spec = spec.with_labels(())
    if not spec.labels:
        spec = spec.with_labels([str(i) for i in range(num_classes)])
    return spec, notes

