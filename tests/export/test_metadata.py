"""Every exported file describes itself: the metadata is in the file, in the manifest, and harmless."""

import json

import numpy as np
import pytest

from edgeport.core.errors import ExportError, ModelFileError
from edgeport.core.manifest import read_manifest
from edgeport.runtime import load
from edgeport.runtime.metadata import read_tflite_metadata, tflite_metadata_from_bytes

KEYS = {"labels", "norm_mean", "norm_std", "layout", "image_shape", "preprocessing", "dataset", "producer"}


def test_every_artifact_carries_metadata_in_file_and_manifest(tiny_run):
    for entry in read_manifest(tiny_run)["artifacts"]:
        if entry["format"] not in ("tflite", "onnx"):
            continue
        meta = entry["metadata"]
        assert KEYS <= set(meta), entry["name"]
        assert json.loads(meta["labels"]) == [str(i) for i in range(10)]
        assert json.loads(meta["image_shape"]) == [28, 28, 1] and meta["layout"] == "NHWC"
        assert meta["dataset"] == "bundled MNIST" and meta["model_name"] == "tiny"
        in_file = load(tiny_run / entry["path"]).metadata  # what the runtime reads is what was recorded
        assert {k: in_file.get(k) for k in meta} == meta  # (a converter may add its own keys, e.g. onnxruntime's)


def test_tflite_metadata_rewrite_keeps_the_model_and_its_alignment(artifacts, mnist_test):
    pytest.importorskip("tensorflow")
    from ai_edge_litert import schema_py_generated as schema

    from edgeport.export.metadata import embed_tflite_metadata

    src = artifacts["tflite_int8"]
    new = embed_tflite_metadata(src.read_bytes(), {"labels": '["a"]', "note": "second write replaces the first"})
    assert tflite_metadata_from_bytes(new) == {"labels": '["a"]', "note": "second write replaces the first"}
    model = schema.Model.GetRootAs(bytearray(new), 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(b"edgeport") == 1
    for i in range(model.BuffersLength()):  # weights stay 16-byte aligned for in-place reads (TFLM)
        if model.Buffers(i).DataLength():
            assert model.Buffers(i)._tab.Vector(4) % 16 == 0
    copy = src.with_name("rewritten.tflite")
    copy.write_bytes(new)
    images, _ = mnist_test
    try:
        assert np.array_equal(load(copy).predict(images[:50]), load(src).predict(images[:50]))
    finally:
        copy.unlink()


def test_not_a_tflite_file(tmp_path):
    pytest.importorskip("tensorflow")
    from edgeport.export.metadata import embed_tflite_metadata

    with pytest.raises(ExportError, match="not a TFLite flatbuffer"):
        embed_tflite_metadata(b"\0" * 64, {"a": "b"})
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"hello")
    assert read_tflite_metadata(junk) == {}  # not ours to judge: the interpreter reports the real error


def test_damaged_metadata_is_a_model_file_error(artifacts):
    pytest.importorskip("tensorflow")
    from edgeport.export.metadata import embed_tflite_metadata

    data = bytearray(embed_tflite_metadata(artifacts["tflite_fp32"].read_bytes(), {"labels": "x"}))
    at = bytes(data).find(b'{"labels": "x"}')
    data[at : at + 1] = b"["  # the JSON object is no longer one
    with pytest.raises(ModelFileError, match="damaged edgeport metadata"):
        tflite_metadata_from_bytes(bytes(data), "broken.tflite")
