"""Training-time compression on the tiny model, a few fine-tune steps each: assert what each method promises."""

import numpy as np
import pytest

from edgeport.core.errors import ConfigError

pytest.importorskip("tensorflow_model_optimization")

from edgeport.train.compress import (  # noqa: E402
    CompressConfig,
    Compressor,
    Method,
    check_applicable,
    holds_2_4,
    kernel_layers,
    kernel_stats,
    load_model,
    pruning_schedule,
)

FAST = dict(epochs=0.5, batch_size=64)  # 16 steps on the tiny run's 2,000 training images


@pytest.fixture(scope="module")
def compressor(tiny_run):
    from edgeport.core.data import load_dataset

    return Compressor(tiny_run / "model.keras", load_dataset(None, 500, 2500, 300), quiet=True)


def test_pruning_schedule_fits_a_short_fine_tune():
    s = pruning_schedule(200, 0.8)
    assert s["frequency"] < 100  # tfmot's default would prune at most twice in 200 steps
    assert s["end_step"] % s["frequency"] == 0 and s["end_step"] <= 140  # lands on a pruning event, leaves recovery
    assert pruning_schedule(3, 0.5)["end_step"] >= 1


def test_prune_reaches_target_in_every_layer(compressor, tmp_path):
    r = compressor.run(CompressConfig(method=Method.PRUNE, sparsity=0.8, **FAST), tmp_path, "prune")
    stats = kernel_stats(load_model(r.path))
    first = kernel_layers(compressor.base)[0].name  # Keras numbers layer names per session: look it up
    assert first in r.lineage["skipped_layers"]  # 72 weights < min_weights: left dense
    assert set(r.lineage["pruned_layers"]) == set(stats["layers"]) - {first}
    for name in r.lineage["pruned_layers"]:
        assert stats["layers"][name]["sparsity"] >= 0.79, name
    assert r.lineage["overall_sparsity"] >= 0.79 and r.lineage["schedule"]["frequency"] >= 1


def test_2_4_pattern_holds_in_every_group_and_skips_what_cannot_take_it(compressor, tmp_path):
    r = compressor.run(CompressConfig(method=Method.SPARSE_2_4, **FAST), tmp_path, "s24")
    model = load_model(r.path)
    first = kernel_layers(compressor.base)[0].name
    assert "1 input channel" in r.lineage["skipped_layers"][first]  # the first conv sees one channel
    pruned = [layer for layer in model.layers if layer.name in r.lineage["pruned_layers"]]
    assert pruned
    for layer in pruned:
        assert holds_2_4(layer.get_weights()[0]), layer.name
    assert abs(r.lineage["overall_sparsity"] - 0.5) < 0.01


def test_holds_2_4_detects_a_broken_group():
    k = np.zeros((3, 3, 8, 4), np.float32)
    k[..., :2, :] = 1.0
    assert holds_2_4(k)
    k[0, 0, 2, 0] = 1.0  # three nonzeros in one group of four input channels
    assert not holds_2_4(k)


def test_cluster_leaves_at_most_16_values_per_layer(compressor, tmp_path):
    r = compressor.run(CompressConfig(method=Method.CLUSTER, clusters=16, **FAST), tmp_path, "cluster")
    stats = kernel_stats(load_model(r.path))
    for name in r.lineage["clustered_layers"]:
        assert stats["layers"][name]["unique"] <= 16, name


def test_qat_model_round_trips_through_its_files(compressor, tmp_path):
    from edgeport.core.data import load_dataset, normalise

    r = compressor.run(CompressConfig(method=Method.QAT, **FAST), tmp_path, "qat")
    assert r.path.name == "qat.qat.h5" and (tmp_path / "qat.start.keras").is_file()
    model = load_model(r.path)
    assert any(type(layer).__name__.startswith("Quantize") for layer in model.layers)
    d = load_dataset(None, 500, 2500, 300)
    acc = float((model.predict(normalise(d.test_images), verbose=0).argmax(1) == d.test_labels).mean())
    assert acc == pytest.approx(r.lineage["keras_test_accuracy"], abs=1e-9)  # the same weights came back


def test_pqat_keeps_the_zeros_and_cqat_the_clusters(compressor, tmp_path):
    r = compressor.run(CompressConfig(method=Method.PQAT, sparsity=0.8, **FAST), tmp_path, "pqat")
    assert r.lineage["first_phase"]["method"] == "prune"
    assert r.lineage["overall_sparsity"] >= 0.79
    assert kernel_stats(load_model(r.path), r.lineage["counted_layers"])["overall_sparsity"] >= 0.79
    r = compressor.run(CompressConfig(method=Method.CQAT, clusters=16, **FAST), tmp_path, "cqat")
    for name in r.lineage["first_phase"]["clustered_layers"]:
        assert r.lineage["layers"][name]["unique_per_channel_max"] <= 16, name


def _model(*layers):
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    return keras.Sequential([keras.layers.Input((28, 28, 1)), *layers])


def test_2_4_on_a_model_where_no_layer_qualifies_is_refused():
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    L = keras.layers
    model = _model(L.Conv2D(3, 3), L.GlobalAveragePooling2D(), L.Dense(10))  # 1 and 3 input channels
    with pytest.raises(ConfigError, match="no layer qualifies for 2:4.*conv2d\\w*: 1 input channel"):
        check_applicable(model, CompressConfig(method=Method.SPARSE_2_4))


def test_qat_on_a_layer_tfmot_cannot_quantise_is_refused():
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    L = keras.layers
    model = _model(L.Conv2D(4, 3), L.LayerNormalization(name="ln"), L.Flatten(), L.Dense(10))
    with pytest.raises(ConfigError, match=r"QAT cannot quantise layer\(s\) ln \(LayerNormalization\)"):
        check_applicable(model, CompressConfig(method=Method.QAT))


@pytest.mark.parametrize("method", [Method.QAT, Method.PQAT, Method.CQAT, Method.SPARSE_2_4])
def test_methods_apply_to_the_default_model(method):
    """Conv-BN-ReLU and Dense-BN-ReLU: BatchNormalization is quantisable there (folded by the converter)."""
    from edgeport.train.models import build_model

    check_applicable(build_model("default"), CompressConfig(method=method))


@pytest.mark.parametrize("kwargs, match", [
    (dict(sparsity=1.0), "sparsity must be in"), (dict(sparsity=0.0), "sparsity must be in"),
    (dict(clusters=1), "clusters"), (dict(min_weights=-1), "min_weights"),
    (dict(epochs=0), "epochs"), (dict(learning_rate=-1.0), "learning_rate"),
])
def test_out_of_range_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CompressConfig(method=Method.PRUNE, **kwargs).validate()


def test_dense_batchnorm_folds_so_qat_files_are_all_int8(tmp_path):
    """The default model's Dense+BN: folded before QAT, the converted file stores every weight tensor as int8."""
    from edgeport.core.data import load_dataset, normalise
    from edgeport.export.file_stats import tflite_weight_stats
    from edgeport.train.compress import fold_dense_batchnorm, quantize
    from edgeport.train.models import build_model
    from edgeport.train.tf import import_tf

    tf, _ = import_tf()
    model = build_model("default")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial BN statistics, so folding has something to get wrong
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 2, w.shape).astype("float32") for w in layer.get_weights()])
    images = load_dataset(None, 100, 300, 10).train_images[:64]
    folded, names = fold_dense_batchnorm(model, images)
    kinds = [type(la).__name__ for la in folded.layers]
    assert len(names) == 2 and kinds.count("BatchNormalization") == 3 and kinds.count("ReLU") == 3  # BN + ReLU
    x = normalise(images)
    assert np.abs(folded.predict(x, verbose=0) - model.predict(x, verbose=0)).max() <= 1e-4
    conv = tf.lite.TFLiteConverter.from_keras_model(quantize(folded, Method.QAT))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    (tmp_path / "qat.tflite").write_bytes(conv.convert())
    dtypes = {t["dtype"] for t in tflite_weight_stats(tmp_path / "qat.tflite")["weight_tensors"].values()}
    assert dtypes == {"int8"}
