"""Random shifts: every image moves by its own offset within range, the border repeats the edge, runs repeat."""

import numpy as np
import pytest

from edgeport.core.errors import ConfigError
from edgeport.train.augment import random_shift


def _dots(n, shape):
    """n images, each black with one white pixel in the middle."""
    x = np.zeros((n, *shape), np.uint8)
    x[:, shape[0] // 2, shape[1] // 2] = 255
    return x


@pytest.mark.parametrize("shape", [(28, 28), (32, 32, 3)])
def test_each_image_moves_by_its_own_offset_within_range(shape):
    out = random_shift(_dots(500, shape), 2, np.random.default_rng(0))
    assert out.shape == (500, *shape) and out.dtype == np.uint8
    where = np.argwhere(out.reshape(500, shape[0], shape[1], -1)[..., 0] == 255)
    assert len(where) == 500  # the dot is never lost at |offset| <= 2 from the middle
    offsets = where[:, 1:] - np.array([shape[0] // 2, shape[1] // 2])
    assert set(map(tuple, offsets)) == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}  # all 25 seen
    if len(shape) == 3:
        assert (out[..., 0] == out[..., 2]).all()  # channels move together


def test_border_repeats_the_edge_and_zero_shift_is_the_identity():
    flat = np.full((8, 10, 10), 7, np.uint8)
    assert (random_shift(flat, 3, np.random.default_rng(1)) == 7).all()  # no black frame on a uniform image
    x = np.random.default_rng(2).integers(0, 256, (4, 10, 10), dtype=np.uint8)
    assert random_shift(x, 0, np.random.default_rng(0)) is x


def test_same_seed_same_shifts():
    x = np.random.default_rng(3).integers(0, 256, (50, 12, 12), dtype=np.uint8)
    a = random_shift(x, 2, np.random.default_rng(5))
    assert (a == random_shift(x, 2, np.random.default_rng(5))).all()
    assert not (a == random_shift(x, 2, np.random.default_rng(6))).all()


@pytest.mark.parametrize("value", [-1, 1.5])
def test_bad_shift_setting(value):
    from edgeport.train.fit import TrainConfig

    with pytest.raises(ConfigError, match="augment_shift must be a whole number of pixels >= 0"):
        TrainConfig(augment_shift=value).validate()
