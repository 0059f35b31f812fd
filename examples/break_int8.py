"""Write a Keras 3 MNIST CNN that full-int8 quantisation breaks while its float outputs are unchanged.

    python examples/break_int8.py OUT.keras [--train-limit 30000] [--epochs 6] [--huge 1000] [--seed 0]

A small CNN is trained on the bundled MNIST, then its first convolution gets one more output channel, a
huge constant: a zero kernel and the bias `--huge`, so after ReLU and max pooling it is
`huge` everywhere; the next convolution's weights for that input channel are zero, so it ignores it and the
model's float outputs do not change (0 * huge is exactly 0). Int8 activations are quantised per tensor: the
tensor's range becomes [0, huge], its step huge/255, and every other channel of it (values of a few units) rounds
to zero, so the int8 file loses tens of points. A whole-tensor SQNR of that tensor still looks fine (the constant
channel dominates its power); per-channel statistics see the damage. `edgeport run --model OUT.keras --max-drop 1`
keeps the layers that read or write that tensor in float.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def build(seed: int, filters: int = 16):
    """The CNN: conv(filters) -> max-pool -> conv(32) -> max-pool -> flatten -> dense(10) softmax (Keras 3)."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(filters, 3, activation="relu", name="conv2d"),
        L.MaxPooling2D(name="max_pooling2d"),
        L.Conv2D(32, 3, activation="relu", name="conv2d_1"),
        L.MaxPooling2D(name="max_pooling2d_1"),
        L.Flatten(name="flatten"),
        L.Dense(10, activation="softmax", name="dense"),
    ])


def break_int8(model, huge: float = 1000.0):
    """The same model with one more first-conv channel: a constant `huge` (zero kernel, bias `huge`) that the second
    conv ignores (zero weights for it). Every trained weight is copied, so the float outputs are unchanged."""
    conv, nxt = model.get_layer("conv2d"), model.get_layer("conv2d_1")
    wider = build(0, filters=conv.filters + 1)
    for layer in model.layers:
        if layer.name not in ("conv2d", "conv2d_1"):
            wider.get_layer(layer.name).set_weights(layer.get_weights())
    kernel, bias = conv.get_weights()
    zeros = np.zeros(kernel.shape[:-1] + (1,), kernel.dtype)
    wider.get_layer("conv2d").set_weights([np.concatenate([kernel, zeros], -1), np.append(bias, huge)])
    kernel, bias = nxt.get_weights()  # (kh, kw, in, out): nothing is read from the new input channel
    zeros = np.zeros(kernel.shape[:2] + (1, kernel.shape[3]), kernel.dtype)
    wider.get_layer("conv2d_1").set_weights([np.concatenate([kernel, zeros], 2), bias])
    return wider


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="the .keras file to write")
    ap.add_argument("--train-limit", type=int, default=30000, help="training images (the first N of MNIST's)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--huge", type=float, default=1000.0, help="the constant activation of the broken channel")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.pop("TF_USE_LEGACY_KERAS", None)  # plain Keras 3, as a user's model would be
    from edgeport.core.data import load_dataset

    data = load_dataset(train_limit=args.train_limit, val_size=1000, test_limit=2000)
    x, y = data.train_images.astype("float32") / 255.0, data.train_labels
    model = build(args.seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0)
    xt = data.test_images.astype("float32") / 255.0
    before = model.predict(xt, verbose=0)
    model = break_int8(model, args.huge)
    after = model.predict(xt, verbose=0)
    acc = float((after.argmax(1) == data.test_labels).mean())
    diff = float(np.abs(after - before).max())
    print(f"float accuracy {acc:.2%} on {len(xt)} test images; max |dp| after breaking {diff:.1e}")
    model.save(Path(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
