"""mobilenet_v2: built for RGB and grayscale inputs, trained a few steps, then put through every training-time
method of the default recipe at a tiny width on a tiny in-memory dataset, asserting what each method promises."""

from collections import Counter

import numpy as np
import pytest

from edgeport.core.errors import ConfigError

pytest.importorskip("tensorflow_model_optimization")

from edgeport.train.compress import (  # noqa: E402
    CompressConfig,
    Compressor,
    Method,
    holds_2_4,
    kernel_stats,
    load_model,
)

ALPHA = 0.35  # tiny width: 8-channel stem
# The methods' cost is per layer (tracing ~100 wrapped layers), so they run on 3 blocks of the table: every kind of
# layer and block (no expansion; stride 2; a residual Add) in 31 layers. The full table is built and trained above.
SHORT = ((1, 16, 1, 1), (6, 24, 2, 2))
FAST = dict(epochs=1.0, batch_size=64)  # 4 fine-tune steps on 256 images


def _mobilenet(shape, classes, **kwargs):
    from edgeport.train.models import mobilenet_v2

    return mobilenet_v2(shape, classes, **{"alpha": ALPHA, **kwargs})


def _dataset(shape, classes=4, seed=0):
    """Random uint8 images (N, H, W, C) and labels: the methods' promises hold on any data."""
    from edgeport.core.data import Dataset
    from edgeport.core.spec import InputSpec

    rng = np.random.default_rng(seed)
    spec = InputSpec(shape[0], shape[1], shape[2], labels=tuple(f"c{i}" for i in range(classes)))

    def split(n):
        return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, classes, n).astype(np.int64)

    return Dataset(*split(256), *split(32), *split(64), spec=spec, source="synthetic")


@pytest.mark.parametrize("shape", [(32, 32, 3), (48, 48, 1)])
def test_builds_and_learns_on_rgb_and_grayscale(shape):
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    model = _mobilenet(shape, 5)
    kinds = Counter(type(layer).__name__ for layer in model.layers)
    assert kinds["DepthwiseConv2D"] == 8 and kinds["Add"] == 3  # one per block; a residual per repeated block
    assert all(layer.max_value == 6 for layer in model.layers if type(layer).__name__ == "ReLU")
    assert model.input_shape == (None, *shape) and model.output_shape == (None, 5)
    assert model.input_names == ["image"] and model.output_names == ["probs"]
    rng = np.random.default_rng(0)
    x, y = rng.random((16, *shape), dtype=np.float32), rng.integers(0, 5, 16)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    losses = [float(model.train_on_batch(x, y)) for _ in range(8)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]  # gradients reach through the residual blocks
    assert np.allclose(model.predict(x, verbose=0).sum(axis=1), 1.0, atol=1e-5)


def test_full_width_and_the_stem_stride():
    from edgeport.train.models import build_model

    small, large = build_model("mobilenet_v2", (32, 32, 3), 10), build_model("mobilenet_v2", (64, 64, 1), 10)
    for model in (small, large):  # the stem halves 64 px inputs, so both end on 4x4 positions
        assert model.get_layer("head_conv").output_shape[1:] == (4, 4, 256)
    assert small.get_layer("stem_conv").output_shape[1:3] == (32, 32)
    widths = [layer.filters for layer in small.layers if type(layer).__name__ == "Conv2D"]
    assert all(w % 8 == 0 for w in widths)  # every 1x1 conv stays eligible for 2:4 sparsity
    assert 150_000 < small.count_params() < 300_000


@pytest.mark.parametrize("shape", [(15, 32, 3), (32, 32)])
def test_refuses_what_it_cannot_take(shape):
    with pytest.raises(ConfigError, match=r"mobilenet_v2 takes images \(height, width, channels\) of at least 16x16"):
        _mobilenet(shape, 10)


@pytest.mark.parametrize("method, match", [
    (Method.PRUNE, r"prune: no layer would be pruned \(dw: depthwise kernel: tfmot does not prune DepthwiseConv2D; "
                   r"left dense; fc: 40 weights < min_weights 1024: left dense\); lower min_weights"),
    (Method.CQAT, r"cqat: no layer would be clustered \(dw: depthwise kernel: tfmot does not cluster DepthwiseConv2D"),
])
def test_a_model_of_depthwise_and_small_kernels_has_nothing_to_prune_or_cluster(method, match):
    from edgeport.train.compress import check_applicable
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    L = keras.layers
    model = keras.Sequential([L.Input((16, 16, 4)), L.DepthwiseConv2D(3, name="dw"), L.GlobalAveragePooling2D(),
                              L.Dense(10, name="fc")])
    with pytest.raises(ConfigError, match=match):
        check_applicable(model, CompressConfig(method=method, clusters=64))


@pytest.fixture(scope="module")
def compressor(tmp_path_factory):
    """A grayscale 48x48 tiny-width, 3-block mobilenet_v2 trained one epoch, ready for every method."""
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    data = _dataset((48, 48, 1))
    keras.utils.set_random_seed(0)
    model = _mobilenet((48, 48, 1), 4, blocks=SHORT)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(data.spec.normalise(data.train_images), data.train_labels, batch_size=64, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("mobilenet") / "model.keras"
    model.save(path)
    return Compressor(path, data, quiet=True)


def _depthwise(model) -> set[str]:
    return {layer.name for layer in model.layers if type(layer).__name__ == "DepthwiseConv2D"}


def _int8_file(model, path):
    """Convert a QAT model to an int8 .tflite as the tflite_int8 target does; return its weight stats."""
    from edgeport.export.file_stats import tflite_weight_stats
    from edgeport.train.tf import import_tf

    tf, _ = import_tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.inference_input_type, conv.inference_output_type = tf.int8, tf.int8
    path.write_bytes(conv.convert())
    return tflite_weight_stats(path)


def test_default_recipe_settings_apply():
    """The recipe's methods and settings are what the tests below exercise."""
    from edgeport.export.recipe import load_recipe

    methods = {v.compress.method for v in load_recipe().variants}
    assert methods == set(Method)


def test_prune_reaches_80_percent_and_leaves_depthwise_kernels_dense(compressor, tmp_path):
    r = compressor.run(CompressConfig(method=Method.PRUNE, sparsity=0.8, min_weights=256, **FAST), tmp_path, "prune")
    depthwise = _depthwise(compressor.base)
    assert depthwise <= set(r.lineage["skipped_layers"])
    assert all("tfmot does not prune DepthwiseConv2D" in r.lineage["skipped_layers"][n] for n in depthwise)
    stats = kernel_stats(load_model(r.path))
    big = {n for n, s in stats["layers"].items() if s["weights"] >= 256} - depthwise
    assert set(r.lineage["pruned_layers"]) == big and len(big) == 6  # 4 block 1x1 convs, the head, the classifier
    for name in r.lineage["pruned_layers"]:
        assert stats["layers"][name]["sparsity"] >= 0.79, name


def test_2_4_holds_on_pointwise_convs_and_skips_depthwise_and_the_stem(compressor, tmp_path):
    r = compressor.run(CompressConfig(method=Method.SPARSE_2_4, **FAST), tmp_path, "s24")
    skipped = r.lineage["skipped_layers"]
    assert "1 input channel" in skipped["stem_conv"]
    assert {n for n, why in skipped.items() if "depthwise" in why} == _depthwise(compressor.base)
    model = load_model(r.path)
    pruned = [layer for layer in model.layers if layer.name in r.lineage["pruned_layers"]]
    assert len(pruned) == 7  # 5 block 1x1 convs (block 1 has no expand), the head conv and the classifier
    for layer in pruned:
        assert holds_2_4(layer.get_weights()[0]), layer.name


def test_cluster_leaves_16_values_and_skips_depthwise(compressor, tmp_path):
    r = compressor.run(CompressConfig(method=Method.CLUSTER, clusters=16, **FAST), tmp_path, "cluster")
    assert _depthwise(compressor.base) <= set(r.lineage["skipped_layers"])
    stats = kernel_stats(load_model(r.path))
    assert len(r.lineage["clustered_layers"]) == 8  # every Conv2D and the Dense
    for name in r.lineage["clustered_layers"]:
        assert stats["layers"][name]["unique"] <= 16, name


def test_qat_wraps_relu6_add_and_depthwise_and_round_trips(compressor, tmp_path):
    r = compressor.run(CompressConfig(method=Method.QAT, **FAST), tmp_path, "qat")
    model = load_model(r.path)
    wrapped = Counter(type(layer.layer).__name__ for layer in model.layers if hasattr(layer, "layer"))
    assert wrapped["DepthwiseConv2D"] == 3 and wrapped["Add"] == 1 and wrapped["ReLU"] == 7
    probs = model.predict(compressor.spec.normalise(compressor.data.test_images), verbose=0)
    assert float((probs.argmax(1) == compressor.data.test_labels).mean()) == r.lineage["keras_test_accuracy"]


def test_pqat_int8_file_is_all_int8_and_keeps_the_zeros(compressor, tmp_path):
    """Reuses the prune test's result (same settings), then QAT; one int8 conversion, as the tflite_int8 target."""
    r = compressor.run(CompressConfig(method=Method.PQAT, sparsity=0.8, min_weights=256, **FAST), tmp_path, "pqat")
    assert r.lineage["overall_sparsity"] >= 0.79
    stats = _int8_file(load_model(r.path), tmp_path / "pqat.tflite")
    dtypes = Counter(t["dtype"] for t in stats["weight_tensors"].values())
    assert dtypes == {"int8": 11}  # 7 convs, 3 depthwise, the classifier: every BN folded into its conv
    zeros = sum(t["weights"] * t["sparsity"] for t in stats["weight_tensors"].values())
    pruned = sum(r.lineage["layers"][n]["weights"] for n in r.lineage["counted_layers"])
    assert zeros >= 0.79 * pruned  # the pruned kernels' zeros survive BN folding and int8 conversion


def test_cqat_keeps_the_clusters(compressor, tmp_path):
    r = compressor.run(CompressConfig(method=Method.CQAT, clusters=16, **FAST), tmp_path, "cqat")
    assert len(r.lineage["first_phase"]["clustered_layers"]) == 8
    for name in r.lineage["first_phase"]["clustered_layers"]:
        assert r.lineage["layers"][name]["unique_per_channel_max"] <= 16, name


def test_rgb_model_through_2_4_and_cluster(tmp_path):
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    data = _dataset((32, 32, 3))
    model = _mobilenet((32, 32, 3), 4, blocks=SHORT)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(data.spec.normalise(data.train_images), data.train_labels, batch_size=64, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    compressor = Compressor(tmp_path / "model.keras", data, quiet=True)
    r = compressor.run(CompressConfig(method=Method.SPARSE_2_4, **FAST), tmp_path, "s24")
    assert "3 input channel" in r.lineage["skipped_layers"]["stem_conv"] and len(r.lineage["pruned_layers"]) == 7
    r = compressor.run(CompressConfig(method=Method.CLUSTER, **FAST), tmp_path, "cluster")
    assert all(r.lineage["layers"][n]["unique"] <= 16 for n in r.lineage["clustered_layers"])
