"""MNIST-style preprocessing of real images (edgeport/core/images.py): properties, and every bad input."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from edgeport.core.errors import InputError
from edgeport.core.images import (
    BOX,
    MAX_PIXELS,
    SIZE,
    as_is,
    load_image,
    mnist_preprocess,
    preprocess_file,
    resize_image,
    to_channels,
)


def _drawn_seven(w=160, h=120, ink=(20, 20, 90), paper=(240, 236, 225), mode="RGB") -> Image.Image:
    """A '7' drawn dark on light, off-centre, on a page that is neither 28x28 nor square."""
    im = Image.new(mode, (w, h), paper)
    ImageDraw.Draw(im).line([(30, 20), (80, 20), (50, 100)], fill=ink, width=9)
    return im


def _centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    x = x.astype(np.float64)
    return ((x.sum(1) * np.arange(x.shape[0])).sum() / x.sum(), (x.sum(0) * np.arange(x.shape[1])).sum() / x.sum())


def _ink_box(x: np.ndarray, threshold=1) -> tuple[int, int]:
    rows, cols = np.nonzero(x >= threshold)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_drawn_digit_becomes_mnist_like(tmp_path):
    path = tmp_path / "seven.png"
    _drawn_seven().save(path)
    x = preprocess_file(path)
    assert x.shape == (SIZE, SIZE, 1) and x.dtype == np.uint8
    x = x[..., 0]
    assert x.max() >= 200 and x[0].max() == 0 and x[:, 0].max() == 0  # light ink, black border
    assert max(_ink_box(x)) == BOX  # longest side scaled to 20 px
    cy, cx = _centre_of_mass(x)
    assert abs(cy - SIZE / 2) <= 0.5 and abs(cx - SIZE / 2) <= 0.5  # centred by mass, to the pixel


def test_polarity_background_and_size_do_not_matter(tmp_path):
    gray = np.asarray(_drawn_seven().convert("L"))
    dark_on_light = mnist_preprocess(gray)
    light_on_dark = mnist_preprocess(255 - gray)
    assert np.abs(dark_on_light.astype(int) - light_on_dark).max() <= 8
    grey_paper = np.asarray(_drawn_seven(paper=(170, 170, 170)).convert("L"))  # a dim photo of paper
    assert np.abs(mnist_preprocess(grey_paper).astype(int) - dark_on_light).mean() < 4
    big = np.asarray(_drawn_seven().resize((640, 480)).convert("L"))
    assert np.abs(mnist_preprocess(big).astype(int) - dark_on_light).mean() < 8


def test_aspect_ratio_is_kept():
    bar = np.full((200, 100), 255, np.uint8)
    bar[20:180, 45:55] = 0  # a tall thin stroke: 160 x 10
    h, w = _ink_box(mnist_preprocess(bar), threshold=64)
    assert h == BOX and w <= 3


def test_transparent_canvas_is_dark_ink_on_white(tmp_path):
    path = tmp_path / "canvas.png"
    _drawn_seven(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA").save(path)
    gray = load_image(path)
    assert np.median(gray) == 255  # transparency became white paper, not black
    opaque = tmp_path / "opaque.png"
    _drawn_seven(ink=(0, 0, 0), paper=(255, 255, 255)).save(opaque)
    assert np.abs(preprocess_file(path).astype(int) - preprocess_file(opaque)).max() <= 2


def test_mnist_images_survive_preprocessing(mnist_test):
    images, _ = mnist_test
    for img in images[:20, ..., 0]:
        again = mnist_preprocess(img)
        corr = np.corrcoef(again.ravel().astype(float), img.ravel().astype(float))[0, 1]
        assert corr > 0.8


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_image_says_no_ink(tmp_path, value):
    path = tmp_path / "blank.png"
    Image.new("L", (50, 40), value).save(path)
    with pytest.raises(InputError, match="no ink found"):
        preprocess_file(path)


def test_faint_smudge_is_not_ink():
    x = np.full((40, 40), 250, np.uint8)
    x[10:20, 10:20] = 240  # 10 grey levels of contrast: paper texture, not a digit
    with pytest.raises(InputError, match="no ink found"):
        mnist_preprocess(x)


def test_undecodable_and_missing_files(tmp_path):
    bad = tmp_path / "digit.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(InputError, match="cannot decode image"):
        load_image(bad)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(InputError, match="cannot decode image"):
        load_image(text)
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "nope.png")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds no pixel data: only decoding it would fail."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_huge_image_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(6000, 6000))  # 36 M pixels, over the 25 M limit; no pixels to decode
    assert 6000 * 6000 > MAX_PIXELS
    with pytest.raises(InputError, match="over the limit of 25,000,000"):
        load_image(path)
    path.write_bytes(_png_header_only(100_000, 100_000))  # past Pillow's own bomb guard: same message
    with pytest.raises(InputError, match="over the limit"):
        load_image(path)
    small = tmp_path / "small.png"
    _drawn_seven().save(small)
    with pytest.raises(InputError, match="over the limit of 1,000"):
        load_image(small, max_pixels=1000)


def test_no_preprocess_needs_model_sized_images(tmp_path, mnist_test):
    images, _ = mnist_test
    images = images[..., 0]
    assert np.array_equal(as_is(images[0], (28, 28)), images[0])
    path = tmp_path / "seven.png"
    _drawn_seven().save(path)
    with pytest.raises(InputError, match="drop --no-preprocess"):
        preprocess_file(path, preprocess=False)
    Image.fromarray(images[0]).save(path)
    assert np.array_equal(preprocess_file(path, preprocess=False)[..., 0], images[0])


def test_bad_array_is_an_input_error():
    with pytest.raises(InputError, match="uint8 grayscale"):
        mnist_preprocess(np.zeros((28, 28, 3), np.uint8))


@pytest.mark.parametrize("mode,expect", [("pad", "black bars top and bottom"), ("crop", "sides cut"),
                                         ("stretch", "whole image squeezed")])
def test_resize_modes_keep_or_change_the_aspect_ratio(mode, expect):
    image = np.full((20, 40, 3), 200, np.uint8)  # a wide grey photo
    out = resize_image(image, 16, 16, mode)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    if mode == "pad":  # scaled to 8x16 and centred: rows 4..11 are the photo, the rest black
        assert out[:4].max() == 0 and out[12:].max() == 0 and out[4:12].min() == 200
    else:
        assert out.min() == 200, expect


def test_resize_leaves_a_model_sized_image_alone():
    image = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    assert resize_image(image, 16, 16, "crop") is image


def test_rgb_file_to_an_rgb_spec(tmp_path):
    from edgeport.core.spec import InputSpec

    path = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), (250, 10, 10)).save(path, quality=95)
    x = preprocess_file(path, InputSpec(32, 32, 3))
    assert x.shape == (32, 32, 3) and x[16, 16, 0] > 200 and x[16, 16, 1] < 40
    assert x[0].max() == 0  # padded: a 4:3 photo in a square leaves black bars


def test_channel_conversion_uses_pillows_luma():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.array_equal(to_channels(rgb, 1)[..., 0], want)
    assert to_channels(want[..., None], 3).shape == (5, 7, 3)


def test_16_bit_grey_png_keeps_its_contrast(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1024)  # 0 .. 64512
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert np.array_equal(load_image(path), (ramp >> 8).astype(np.uint8))
