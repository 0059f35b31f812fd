"""Embed edgeport's metadata in every exported file, so a .tflite or .onnx explains itself on the device.

What is embedded is a flat map of strings, the same keys in both formats: the producer, model name, dataset
and the input spec (edgeport.core.metadata lists the keys and what they mean; `edgeport.core.metadata.spec_of`
reads them back for the runtime).

ONNX keeps them in `ModelProto.metadata_props` (read by onnxruntime's `custom_metadata_map`). TFLite keeps
them as one entry of the model's `metadata` list named "edgeport", whose buffer holds the map as UTF-8 JSON.
We write that entry with the flatbuffer schema shipped in ai_edge_litert rather than tflite-support's
`TFLITE_METADATA` format: tflite-support's last release (0.4.4, 2023) pins numpy < 2 and an old protobuf,
which cannot share an environment with TensorFlow 2.21.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from edgeport.core.errors import ExportError
from edgeport.core.metadata import TFLITE_METADATA_NAME

TFLITE_FILE_ID = b"TFL3"
BUFFER_ALIGNMENT = 16  # what the TFLite converter uses: TFLM and LiteRT read weights in place


def embed_metadata(path: str | Path, fmt: str, metadata: dict[str, str]) -> dict[str, str]:
    """Write `metadata` into the model file at `path` in place; return what was written.

    Formats without a metadata slot are left alone and get `{}`.
    """
    p = Path(path)
    if fmt == "onnx":
        _embed_onnx(p, metadata)
    elif fmt == "tflite":
        p.write_bytes(embed_tflite_metadata(p.read_bytes(), metadata))
    elif fmt == "tflm":
        pass  # a C array: export/c_array.py embeds the metadata in the .tflite bytes before writing the array
    else:
        return {}
    return dict(metadata)


def _embed_onnx(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.save(proto, str(path))


def embed_tflite_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    """Return the .tflite bytes with our metadata entry added (or replaced); everything else is kept.

    The model is unpacked with the flatbuffer object API and packed again. flatbuffers' Python builder
    aligns a byte vector to 1 byte only, so buffers are packed here with 16-byte alignment as the
    converter does: a microcontroller reads int32 biases and int8 weights straight from flash.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(model_bytes)
    if len(buf) < 8 or not schema.Model.ModelBufferHasIdentifier(buf, 0):
        raise ExportError("cannot embed metadata: not a TFLite flatbuffer (no TFL3 identifier)")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))
    if any((b.offset or 0) > 1 for b in model.buffers or []):
        raise ExportError("cannot embed metadata: model keeps its weights outside the flatbuffer (> 2 GB)")
    payload = np.frombuffer(json.dumps(metadata, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    entries = [m for m in (model.metadata or []) if _name(m.name) != TFLITE_METADATA_NAME]
    aligned = _aligned_buffer_class()
    model.buffers = [aligned.of(b) for b in (model.buffers or [])]
    entry = schema.MetadataT()
    entry.name, entry.buffer = TFLITE_METADATA_NAME, len(model.buffers)
    model.buffers.append(aligned.of(schema.BufferT(data=payload)))
    model.metadata = [*entries, entry]
    builder = flatbuffers.Builder(len(buf) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_ID)
    return bytes(builder.Output())


def _name(name) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


@functools.cache
def _aligned_buffer_class():
    """Built on first use, so importing this module does not import ai_edge_litert."""
    from ai_edge_litert import schema_py_generated as schema

    class AlignedBufferT(schema.BufferT):
        """A Buffer whose data vector starts on a 16-byte boundary (the generated Pack aligns to 1)."""

        @classmethod
        def of(cls, b):
            return cls(data=b.data, offset=b.offset, size=b.size)

        def Pack(self, builder):  # noqa: N802 (the generated API's name)
            data = None
            if self.data is not None:
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT

