"""TFLM as a runtime backend: the same answers as LiteRT on the int8 model, and a clear error without it."""

import sys

import numpy as np
import pytest

from edgeport.core.errors import ConfigError, MissingDependencyError
from edgeport.runtime import NAMED_BACKENDS, load


def test_tflm_matches_litert_on_the_int8_model(artifacts, mnist_test):
    pytest.importorskip("tflite_micro")
    images, labels = mnist_test
    micro = load(artifacts["tflite_int8"], backend="tflm")
    lite = load(artifacts["tflite_int8"])
    assert micro.format == "tflm" and micro.metadata == lite.metadata
    for a, b in ((micro.input, lite.input), (micro.output, lite.output)):
        assert (a.name, a.dtype, a.scale, a.zero_point, a.shape[1:]) == (b.name, b.dtype, b.scale, b.zero_point,
                                                                          b.shape[1:])
    a, b = micro.evaluate(images, labels), lite.evaluate(images, labels)
    assert abs(a.accuracy - b.accuracy) <= 1 / len(labels)  # at most one image apart
    assert (a.predictions == b.predictions).mean() >= 0.99
    # TFLM's reference kernels round differently from LiteRT's optimised ones: a few output steps at most
    assert np.abs(a.probabilities - b.probabilities).max() <= 16 * lite.output.scale + 1e-6


def test_arena_recorded_by_tflm_is_the_smallest_that_runs(artifacts):
    pytest.importorskip("tflite_micro")
    micro = load(artifacts["tflite_int8"], backend="tflm")
    recorded = micro.arena_bytes()
    assert 0 < micro.smallest_arena(hi=recorded * 2) <= recorded


def test_missing_tflm_names_the_extra(artifacts, monkeypatch):
    monkeypatch.setitem(sys.modules, "tflite_micro", None)  # import tflite_micro now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeport\[micro\]'"):
        load(artifacts["tflite_int8"], backend="tflm")


def test_unknown_backend(artifacts):
    with pytest.raises(ConfigError, match="unknown runtime backend 'tvm'"):
        load(artifacts["tflite_int8"], backend="tvm")
    assert set(NAMED_BACKENDS) >= {"litert", "onnxruntime", "tflm"}
