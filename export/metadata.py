"""Embed edgeport's metadata in every exported file, so a .tflite or .onnx explains itself on the device.

What is embedded (a flat map of strings, the same keys in both formats; `edgeport.runtime.metadata`
reads it back and `Model.prepare` applies it):

    producer       "edgeport 0.1.0"
    model_name     the registered model ("default", "seed", ...)
    dataset        where the training images came from ("bundled MNIST" or a folder)
    labels         JSON list of class names, index = output position
    image_shape    JSON [H, W, C] of one input image
    layout         "NHWC": batch, height, width, channels
    input_scale    "1/255": uint8 pixels are divided by 255 first ...
    norm_mean      ... then (x - norm_mean) / norm_std (0 and 1 for our models: they take [0, 1] input)
    norm_std
    ink            "light-on-dark": what the training images look like (MNIST: white digit on black)
    preprocessing  the name of the function real images go through first ("mnist", see runtime/preprocess.py)

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

TFLITE_METADATA_NAME = "edgeport"  # the name of our entry in a TFLite model's metadata list
TFLITE_FILE_ID = b"TFL3"
BUFFER_ALIGNMENT = 16  # what the TFLite converter uses: TFLM and LiteRT read weights in place
MNIST_LABELS = [str(i) for i in range(10)]


def build_metadata(model, model_name: str | None, dataset: str | None) -> dict[str, str]:
    """The metadata for a Keras model trained by edgeport (input in [0, 1], softmax output)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        producer = f"edgeport {version('edgeport')}"
    except PackageNotFoundError:
        producer = "edgeport"
    h, w, c = (int(d) for d in model.input_shape[1:4])
    classes = int(model.output_shape[-1])
    # Class names: MNIST digits are their own names; other IDX datasets carry no names, so use the index.
    labels = MNIST_LABELS if classes == 10 and (dataset or "bundled MNIST") == "bundled MNIST" else \
        [str(i) for i in range(classes)]
    return {
        "producer": producer,
        "model_name": model_name or "",
        "dataset": dataset or "bundled MNIST",
        "labels": json.dumps(labels),
        "image_shape": json.dumps([h, w, c]),
        "layout": "NHWC",
        "input_scale": "1/255",
        "norm_mean": "0.0",  # edgeport models take pixels / 255 as they are (train/data.py normalise)
        "norm_std": "1.0",
        "ink": "light-on-dark",
        "preprocessing": "mnist",
    }


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

