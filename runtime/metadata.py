"""Read the metadata edgeport embeds in exported files (see export/metadata.py for what and why).

`read_tflite_metadata(path)` returns the flat string map stored in the TFLite model's "edgeport" metadata
entry, `{}` when the file has none. ONNX files need no helper: onnxruntime exposes `metadata_props` as
`custom_metadata_map` (runtime/onnxrt.py). `labels_of` turns either into class names, with MNIST's digits
when a file carries nothing of ours.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeport.core.errors import ModelFileError

TFLITE_METADATA_NAME = "edgeport"  # same name as export/metadata.py (runtime/ must not import export/)
MNIST_DEFAULTS = {  # what a file without our metadata is assumed to want: an MNIST-trained 28x28 model
    "labels": json.dumps([str(i) for i in range(10)]),
    "norm_mean": "0.0",
    "norm_std": "1.0",
    "layout": "NHWC",
    "ink": "light-on-dark",
    "preprocessing": "mnist",
}


def read_tflite_metadata(path: str | Path) -> dict[str, str]:
    """The "edgeport" metadata map of a .tflite file; `{}` for files edgeport did not write."""
    return tflite_metadata_from_bytes(Path(path).read_bytes(), name=str(path))


def tflite_metadata_from_bytes(data: bytes, name: str = "model") -> dict[str, str]:
    """Same as `read_tflite_metadata`, for model bytes already in memory (e.g. parsed from a C array)."""
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(data)
    if len(buf) < 8 or not schema.Model.ModelBufferHasIdentifier(buf, 0):
        return {}  # not a flatbuffer: the interpreter gives the real error
    try:
        model = schema.Model.GetRootAs(buf, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if (entry.Name() or b"").decode("utf-8", "replace") != TFLITE_METADATA_NAME:
                continue
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            value = json.loads(bytes(raw).decode("utf-8"))
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            return {str(k): str(v) for k, v in value.items()}
    except (ValueError, UnicodeDecodeError, AttributeError, IndexError) as exc:
        raise ModelFileError(f"{name}: damaged edgeport metadata in the TFLite file ({exc})") from None
    return {}


def labels_of(metadata: dict[str, str], num_classes: int) -> list[str]:
    """Class names from the metadata; class indices as names when there are none (or the wrong number)."""
    try:
        labels = json.loads(metadata["labels"])
    except (KeyError, ValueError, TypeError):
        labels = None
    if not isinstance(labels, list) or len(labels) != num_classes:
        return [str(i) for i in range(num_classes)]
    return [str(x) for x in labels]


def has_edgeport_metadata(metadata: dict[str, str]) -> bool:
    """True when a file carries the keys predict relies on (labels and normalisation)."""
    return all(k in metadata for k in ("labels", "norm_mean", "norm_std"))
