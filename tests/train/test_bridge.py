"""The Keras 3 -> tf-keras bridge (train/bridge.py): equal outputs, tfmot accepts the rebuild, and a one-line refusal
naming the layer for what it cannot rebuild. Every model is built here with plain Keras 3."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from edgeport.train.bridge import ATOL, BridgeError, is_keras3, to_tf_keras  # noqa: E402

X = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)


def _functional():
    """Conv-BN-ReLU, a depthwise conv with ReLU6, a residual Add, pooling, dropout, softmax: 32x32 RGB, 4 classes."""
    L = keras.layers
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, kernel_regularizer=keras.regularizers.L2(1e-4))(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.DepthwiseConv2D(3, padding="same")(x)
    y = L.ReLU(6.0)(y)
    x = L.Add()([x, L.Conv2D(8, 1)(y)])
    x = L.MaxPooling2D()(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.2)(x)
    out = L.Dense(4, activation="softmax")(x)
    model = keras.Model(inp, out)
    for layer in model.layers:  # BN statistics away from their initial 0/1, so copying them is tested
        if isinstance(layer, L.BatchNormalization):
            layer.moving_mean.assign(np.linspace(-0.5, 0.5, 8).astype(np.float32))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, 8).astype(np.float32))
    return model


def test_functional_model_is_rebuilt_equal_and_tfmot_takes_it():
    import tensorflow_model_optimization as tfmot

    model = _functional()
    assert is_keras3(model)
    result = to_tf_keras(model, X)
    assert type(result.model).__module__.startswith("tf_keras") and not is_keras3(result.model)
    assert result.max_abs_diff <= ATOL
    got = result.model.predict(X, verbose=0)
    assert np.abs(got - np.asarray(model(X))).max() <= ATOL
    assert result.model.layers[1].kernel_regularizer is not None  # settings that matter for fine-tuning come along
    quantised = tfmot.quantization.keras.quantize_model(result.model)
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in quantised.layers)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(result.model.layers[-1])  # one layer, as compress.py does
    assert type(pruned).__name__ == "PruneLowMagnitude"


def test_sequential_with_a_nested_applications_backbone():
    backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35)
    model = keras.Sequential([keras.Input((32, 32, 3)), backbone, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(4, activation="softmax")])
    result = to_tf_keras(model, X)
    assert result.max_abs_diff <= ATOL and result.layers > 100


def test_custom_layer_is_refused_by_name():
    @keras.saving.register_keras_serializable(package="edgeport_test")
    class Square(keras.layers.Layer):
        def call(self, x):
            return x * x

    model = keras.Sequential([keras.Input((32, 32, 3)), Square(name="my_square"), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    with pytest.raises(BridgeError, match=r"layer 'my_square' \(Square\) is not a standard Keras layer"):
        to_tf_keras(model, X)


def test_keras_ops_in_the_graph_are_refused_by_name():
    inp = keras.Input((32, 32, 3))
    x = keras.ops.relu(keras.layers.Conv2D(4, 3)(inp))
    model = keras.Model(inp, keras.layers.Dense(4)(keras.layers.Flatten()(x)))
    with pytest.raises(BridgeError, match=r"\(Relu\) is a Keras 3 operation, not a layer"):
        to_tf_keras(model, X)


def test_subclassed_and_two_input_models_are_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(4)

        def call(self, x):
            return self.dense(keras.ops.reshape(x, (-1, 32 * 32 * 3)))

    net = Net()
    net(X)
    with pytest.raises(BridgeError, match="subclassed"):
        to_tf_keras(net, X)
    a, b = keras.Input((32, 32, 3)), keras.Input((32, 32, 3))
    two = keras.Model([a, b], keras.layers.Dense(4)(keras.layers.Flatten()(keras.layers.Add()([a, b]))))
    with pytest.raises(BridgeError, match=r"2 input\(s\) and 1 output\(s\)"):
        to_tf_keras(two, X)


def test_nested_blocks_with_repeated_default_names_are_flattened_for_tfmot():
    """Two Sequential blocks built in two Keras sessions both hold "conv2d", "batch_normalization", ...: the rebuild
    is flat with unique names (mapped back to BLOCK/NAME), equal to the original, and QAT and pruning take it."""
    import tensorflow_model_optimization as tfmot

    L = keras.layers

    def block(filters):
        keras.backend.clear_session()  # a fresh session: default names start again at "conv2d"
        return keras.Sequential([L.Conv2D(filters, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
                                 L.MaxPooling2D()], name=f"block{filters}")

    first, second = block(8), block(16)
    assert [x.name for x in first.layers] == [x.name for x in second.layers]
    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(second(first(inp)))))
    sample = np.random.default_rng(0).random((8, 16, 16, 3), np.float32)
    result = to_tf_keras(model, sample)
    assert result.max_abs_diff <= ATOL and result.layers == 10
    names = [x.name for x in result.model.layers]
    assert len(names) == len(set(names)) and not any(hasattr(x, "layers") for x in result.model.layers)
    assert result.renamed["block16_conv2d"] == "block16/conv2d" and result.user_name("dense") == "dense"
    quantised = tfmot.quantization.keras.quantize_model(result.model)
    assert any(type(x).__name__ == "QuantizeWrapperV2" for x in quantised.layers)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(result.model)
    assert len(pruned.layers) == len(result.model.layers)
