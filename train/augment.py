"""Training-time augmentation, applied to the uint8 arrays outside the model, so no augmentation layer ends up
in model.keras or any exported file.

Random translation is a dozen lines of numpy: every image moves by its own whole-pixel offset, drawn from a
generator seeded by the run's seed, so a run repeats exactly. Keras' RandomTranslation layer would do the same
inside the graph (and interpolate); as a layer it would be saved with the model, and as a tf.data map it would
draw from TensorFlow's global generator per op.
"""

from __future__ import annotations

import numpy as np


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Move each image (N, H, W) or (N, H, W, C) by up to `max_shift` pixels along each axis, independently;
    the border it uncovers repeats the edge pixels (black on MNIST, a neutral fill on photos)."""
    if max_shift <= 0:
        return images
    images = np.asarray(images)  # a lazy image-folder split decodes here
    n, h, w = images.shape[:3]
    pad = [(0, 0), (max_shift, max_shift), (max_shift, max_shift)] + [(0, 0)] * (images.ndim - 3)
    padded = np.pad(images, pad, mode="edge")
    rows = rng.integers(0, 2 * max_shift + 1, n)[:, None] + np.arange(h)  # (N, H) source rows of each image
    cols = rng.integers(0, 2 * max_shift + 1, n)[:, None] + np.arange(w)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
