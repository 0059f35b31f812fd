"""Shared by the export tests: a hand-set Keras 3 model of the user's own that takes raw pixels (a Rescaling layer
first) and has a separable convolution, and the images it classifies; no training, so every figure is known."""

from pathlib import Path

import numpy as np
import pytest


def brightness_model():
    """Rescaling(1/255) -> SeparableConv2D(3, 1) -> BN -> ReLU -> GAP -> Dense(2): class 0 for bright images, 1 for
    dark. The separable conv's outputs are the mean pixel m, 1 - m and red / 3 (the depthwise step alone is the
    image itself, a different tensor of the same shape); batch norm is the identity."""
    import keras
    from keras import layers as L

    inp = keras.Input((8, 8, 3))
    x = L.Rescaling(1 / 255.0, name="scale")(inp)
    x = L.SeparableConv2D(3, 1, name="sep")(x)
    x = L.BatchNormalization(name="sep_bn")(x)
    x = L.ReLU(name="sep_relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(2, activation="softmax", name="classifier")(x)
    model = keras.Model(inp, out)
    pointwise = np.array([[1, -1, 1], [1, -1, 0], [1, -1, 0]], np.float32).reshape(1, 1, 3, 3) / 3
    model.get_layer("sep").set_weights([np.ones((1, 1, 3, 1), np.float32), pointwise,
                                        np.array([0, 1, 0], np.float32)])
    bn = model.get_layer("sep_bn")
    bn.set_weights([np.ones(3), np.zeros(3), np.zeros(3), np.full(3, 1 - bn.epsilon)])
    model.get_layer("classifier").set_weights([np.array([[10, -10], [-10, 10], [0, 0]], np.float32), np.zeros(2)])
    return model


def brightness_images(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 8x8 RGB images, alternately bright (label 0) and dark (label 1)."""
    labels = np.arange(n) % 2
    low = np.where(labels == 0, 150, 0)[:, None, None, None]
    return (low + rng.integers(0, 100, (n, 8, 8, 3))).astype(np.uint8), labels


@pytest.fixture(scope="session")
def brightness():
    """(brightness_model, brightness_images), for tests that lay the data out their own way."""
    return brightness_model, brightness_images


@pytest.fixture(scope="session")
def raw_pixels(tmp_path_factory) -> tuple[Path, Path]:
    """(model.keras, data.npz): the classifier scores 100% on its data in float."""
    root = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = brightness_images(600, rng), brightness_images(200, rng)
    np.savez(root / "data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    model = brightness_model()
    assert (model.predict(x_test.astype(np.float32), verbose=0).argmax(1) == y_test).all()
    model.save(root / "model.keras")
    return root / "model.keras", root / "data.npz"
