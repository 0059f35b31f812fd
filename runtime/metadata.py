"""Read the metadata edgeport embeds in exported files (see export/metadata.py for what and why).

The keys and what they mean live on the ground floor (edgeport.core.metadata). `read_tflite_metadata(path)`
returns the flat string map stored in the TFLite model's "edgeport" metadata entry, `{}` when the file has
none. ONNX files need no helper: onnxruntime exposes `metadata_props` as `custom_metadata_map`
(runtime/onnxrt.py). `Model.spec` (runtime/base.py) turns either into an InputSpec.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeport.core.errors import ModelFileError
from edgeport.core.metadata import TFLITE_METADATA_NAME


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
