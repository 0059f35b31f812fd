"""Model builders, registered by name. Each takes (input_shape, num_classes) and returns a tf-keras model
whose output is class probabilities (softmax), so every exported file returns probabilities too."""

from __future__ import annotations

from collections.abc import Callable

from edgeport.core.errors import ConfigError

MODELS: dict[str, Callable] = {}


def register(name: str):
    def deco(fn: Callable) -> Callable:
        MODELS[name] = fn
        return fn

    return deco


def build_model(name: str, input_shape=(28, 28, 1), num_classes: int = 10):
    """Build a registered model by name; an unknown name lists the valid ones."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; expected one of: {', '.join(sorted(MODELS))}")
    return MODELS[name](tuple(input_shape), int(num_classes))


@register("seed")
def seed(input_shape, num_classes):
    """The original notebook's CNN: conv32-pool-conv64-pool-dense128-softmax (~99.2% in 4 epochs)."""
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    L = keras.layers
    return keras.Sequential(
        [
            L.Input(input_shape, name="image"),
            L.Conv2D(32, 3, activation="relu"),
            L.MaxPooling2D(),
            L.Conv2D(64, 3, activation="relu"),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(128, activation="relu"),
            L.Dense(num_classes, activation="softmax", name="probs"),
        ],
        name="seed",
    )


@register("default")
def default(input_shape, num_classes):
    """Conv-BN-ReLU blocks (32 | pool | 64, 64 | pool) + dense 128 with light dropout: >= 99.5% on MNIST in 10 epochs
    when trained with the default 2-pixel random shifts (TrainConfig.augment_shift)."""
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    L = keras.layers

    def bn():
        return L.BatchNormalization(momentum=0.9)  # Keras' 0.99 leaves short (--quick) runs with raw statistics

    def block(filters):
        return [L.Conv2D(filters, 3, padding="same", use_bias=False), bn(), L.ReLU()]

    return keras.Sequential(
        [
            L.Input(input_shape, name="image"),
            *block(32),  # one block at 28x28: two made each step ~3x slower
            L.MaxPooling2D(),
            *block(64),
            *block(64),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dropout(0.1),  # 0.1, not 0.3: the shifts regularise too, and with both a short run underfits
            L.Dense(128, use_bias=False),
            bn(),
            L.ReLU(),
            L.Dropout(0.1),
            L.Dense(num_classes, activation="softmax", name="probs"),
        ],
        name="default",
    )


@register("tiny")
def tiny(input_shape, num_classes):
    """A few-thousand-parameter CNN for smoke tests and --quick runs."""
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    L = keras.layers
    return keras.Sequential(
        [
            L.Input(input_shape, name="image"),
            L.Conv2D(8, 3, activation="relu"),
            L.MaxPooling2D(),
            L.Conv2D(16, 3, activation="relu"),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(num_classes, activation="softmax", name="probs"),
        ],
        name="tiny",
    )


# MobileNetV2 for small images: (expansion t, output channels c, repeats n, first stride s), as in Sandler et al.
# 2018, Table 2, cut from 7 stages / 17 blocks to 5 / 8 and from 32x to 8x downsampling, so a 32x32 image
# still has 4x4 positions in the last stage.
MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1))
MOBILENET_V2_STEM = 32  # channels of the first 3x3 convolution (times alpha)
MOBILENET_V2_HEAD = 256  # channels of the last 1x1 convolution (not thinned by alpha < 1, as in the paper)


@register("mobilenet_v2")
def mobilenet_v2(input_shape, num_classes, alpha: float = 1.0, dropout: float = 0.2,
                 blocks: tuple[tuple[int, int, int, int], ...] = MOBILENET_V2_BLOCKS):
    """MobileNetV2 (inverted residual blocks: 1x1 expand, 3x3 depthwise, 1x1 linear project, ReLU6, residual Add
    when shape allows) sized for small images, any H, W >= 16 and any number of channels.

    Layers, with C = channels times `alpha` rounded to a multiple of 8 (as keras.applications does):
        stem   Conv 3x3, C(32), stride 2 when the shorter side is >= 64 px else 1; BN; ReLU6
        t  c   n  s   (expansion, output channels, blocks, stride of the first block)
        1  16  1  1
        6  24  2  2
        6  32  2  2
        6  64  2  2
        6  96  1  1
        head   Conv 1x1, 256 (times alpha when alpha > 1); BN; ReLU6; global average pool; dropout; Dense softmax
    Each block: [Conv 1x1 t*Cin, BN, ReLU6] (absent when t = 1), DepthwiseConv 3x3 stride s, BN, ReLU6,
    Conv 1x1 c, BN (linear), + input when s = 1 and Cin = c. All convolutions use "same" padding and no bias.

    32x32x3, 10 classes, alpha 1.0: 74 layers, 217,738 parameters, 11 M multiply-adds. The ImageNet version (keras
    .applications.MobileNetV2: 17 blocks, 32x downsampling, 1280-channel head) leaves a 32x32 image 1x1 after its
    4th stage and has 2.27 M parameters: too much to train on a few thousand small images on a laptop CPU.
    alpha defaults to 1.0: at 32x32 the reduced table is already cheap, and thinner widths cost accuracy on small
    data (smaller values, e.g. 0.35 or 0.5, are for tests and for the tightest microcontrollers). `blocks` replaces
    the (t, c, n, s) table, e.g. a shorter one for tests.
    """
    from edgeport.train.tf import import_tf

    if len(input_shape) != 3 or min(input_shape[:2]) < 16 or input_shape[2] < 1:
        raise ConfigError(f"mobilenet_v2 takes images (height, width, channels) of at least 16x16 pixels, "
                          f"got {tuple(input_shape)}")
    if not alpha > 0:
        raise ConfigError(f"mobilenet_v2: alpha must be > 0, got {alpha}")
    _, keras = import_tf()
    L = keras.layers

    def width(channels: float) -> int:
        return _make_divisible(channels * alpha)

    def conv_bn(x, filters, kernel, name, stride=1, relu6=True):
        x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)  # 0.9: short runs get settled statistics
        return L.ReLU(6.0, name=f"{name}_relu6")(x) if relu6 else x

    def inverted_residual(x, t, filters, stride, name):
        cin = int(x.shape[-1])
        y = conv_bn(x, cin * t, 1, f"{name}_expand") if t != 1 else x
        y = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_depthwise")(y)
        y = L.BatchNormalization(momentum=0.9, name=f"{name}_depthwise_bn")(y)
        y = L.ReLU(6.0, name=f"{name}_depthwise_relu6")(y)
        y = conv_bn(y, filters, 1, f"{name}_project", relu6=False)
        return L.Add(name=f"{name}_add")([x, y]) if stride == 1 and cin == filters else y

    inputs = L.Input(tuple(input_shape), name="image")
    x = conv_bn(inputs, width(MOBILENET_V2_STEM), 3, "stem", stride=2 if min(input_shape[:2]) >= 64 else 1)
    block = 0
    for t, c, n, s in blocks:
        for i in range(n):
            block += 1
            x = inverted_residual(x, t, width(c), s if i == 0 else 1, f"block{block}")
    x = conv_bn(x, _make_divisible(MOBILENET_V2_HEAD * max(alpha, 1.0)), 1, "head")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dropout(dropout, name="dropout")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v2")


def _make_divisible(channels: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of `divisor` (at least `divisor`), never more than 10% below
    it: MobileNet's rule. Multiples of 8 also keep every 1x1 convolution eligible for 2:4 sparsity."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded
