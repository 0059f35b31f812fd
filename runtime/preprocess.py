"""Turn a real image file into what an MNIST-trained model expects. Pillow + numpy, no TensorFlow.

MNIST digits are white ink on black, cropped to their ink, scaled so the longest side is 20 px and centred
by centre of mass in a 28x28 field. A photo or a drawing is none of that, so `mnist_preprocess` redoes the
same steps. They are spelled out so other implementations (the browser demo, firmware) can match them:

 1. Load (`load_image`): refuse files over `MAX_PIXELS` (width x height, read from the header before any
    pixel is decoded), apply the EXIF orientation, composite transparency onto white (a drawing on a
    transparent canvas is dark ink on a light page), convert to 8-bit grayscale with Pillow's "L" mode
    (L = 0.299 R + 0.587 G + 0.114 B).
 2. Background: the median of the image's 1-pixel border. If it is light (> 127), invert (255 - v), so
    ink is light on dark like MNIST.
 3. Remove the background: subtract that (inverted) border median and clip at 0, so grey paper becomes 0.
    If the brightest remaining pixel is below `MIN_INK` (32 of 255) there is no ink: raise, do not guess.
 4. Stretch contrast so the brightest pixel is 255 (v * 255 / max, rounded).
 5. Crop to the bounding box of pixels >= `INK_THRESHOLD` (64), i.e. the ink, ignoring faint noise.
 6. Resize so the longest side is 20 px (`box`), keeping the aspect ratio (the short side at least 1 px),
    with Pillow's LANCZOS filter (an anti-aliased area-aware resample, like MNIST's own anti-aliasing).
 7. Paste into a black 28x28 field (`size`) so the ink's centre of mass (intensity-weighted mean of row and
    column indices) lands on pixel (14, 14), rounded to whole pixels and clamped so no ink is cut off.
    (MNIST's own test digits have their centre of mass at (14.0, 14.0) in these coordinates.)

The result is uint8 (28, 28), light on dark; the model's own normalisation (scale by 1/255, then norm_mean /
norm_std from the file's metadata) is applied afterwards by `Model.prepare`, not here.
`as_is` is the `--no-preprocess` path: grayscale only, the image must already be model-sized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.core.errors import InputError

MAX_PIXELS = 25_000_000  # largest width x height accepted (a 5000 x 5000 photo); checked before decoding
LIGHT_BACKGROUND = 127  # border median above this means dark ink on a light page: invert
MIN_INK = 32  # after removing the background, a brightest pixel below this means the image is blank
INK_THRESHOLD = 64  # after stretching to 0..255, pixels at or above this count as ink for the crop
BOX = 20  # MNIST: the digit's longest side, in pixels, inside the 28 x 28 field
SIZE = 28


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to uint8 grayscale (H, W); step 1 above. Raises InputError on bad files."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: image file not found")
    try:
        with Image.open(p) as im:  # lazy: reads the header only
            w, h = im.size
            if w * h > max_pixels:
                raise InputError(f"{p}: image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}; "
                                 "downscale it first")
            if w < 1 or h < 1:
                raise InputError(f"{p}: image has no pixels ({w}x{h})")
            im = ImageOps.exif_transpose(im)  # phone photos are often stored sideways with an EXIF flag
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(page, rgba)
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own guard, for headers far past our limit
        raise InputError(f"{p}: image is over the limit of {max_pixels:,} pixels ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: cannot decode image ({first[:160]})") from None


def mnist_preprocess(gray: np.ndarray, size: int = SIZE, box: int = BOX, name: str = "image") -> np.ndarray:
    """Steps 2-7 above: uint8 grayscale (H, W) of any size -> uint8 (size, size), light ink on dark, centred."""
    from PIL import Image

    g = np.asarray(gray)
    if g.ndim != 2 or g.dtype != np.uint8:
        raise InputError(f"{name}: expected a uint8 grayscale (H, W) image, got {g.dtype} {g.shape}")
    x = g.astype(np.int32)
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    if np.median(border) > LIGHT_BACKGROUND:
        x, border = 255 - x, 255 - border
    x = np.clip(x - int(np.median(border)), 0, 255)
    peak = int(x.max())
    if peak < MIN_INK:
        raise InputError(f"{name}: no ink found (blank image, or ink contrast {peak}/255 below {MIN_INK}); "
                         "nothing to classify")
    x = np.rint(x * (255.0 / peak)).astype(np.uint8)
    rows, cols = np.nonzero(x >= INK_THRESHOLD)
    x = x[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = x.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    digit = np.asarray(Image.fromarray(x).resize((nw, nh), Image.Resampling.LANCZOS), dtype=np.float64)
    mass = digit.sum()
    if mass <= 0:  # only possible for a one-pixel speck that resampling washed out
        raise InputError(f"{name}: no ink left after scaling to {box} px")
    cy = (digit.sum(axis=1) * np.arange(nh)).sum() / mass
    cx = (digit.sum(axis=0) * np.arange(nw)).sum() / mass
    top = int(np.clip(round(size / 2 - cy), 0, size - nh))
    left = int(np.clip(round(size / 2 - cx), 0, size - nw))
    out = np.zeros((size, size), np.uint8)
    out[top : top + nh, left : left + nw] = np.clip(np.rint(digit), 0, 255).astype(np.uint8)
    return out


def as_is(gray: np.ndarray, shape: tuple[int, int], name: str = "image") -> np.ndarray:
    """The --no-preprocess path: the grayscale image unchanged, which must already be `shape` (H, W)."""
    g = np.asarray(gray)
    if tuple(g.shape) != tuple(shape):
        raise InputError(f"{name}: image is {g.shape[1]}x{g.shape[0]} but the model takes {shape[1]}x{shape[0]}; "
                         "drop --no-preprocess to crop, scale and centre it")
    return g


def preprocess_file(path: str | Path, shape: tuple[int, int] = (SIZE, SIZE), preprocess: bool = True,
                    max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Load an image file and make it model input: uint8 (H, W) ready for `Model.predict`."""
    gray = load_image(path, max_pixels=max_pixels)
    if not preprocess:
        return as_is(gray, shape, name=str(path))
    h, w = shape
    if h != w or h < 8:
        raise InputError(f"{path}: MNIST preprocessing makes square images; the model takes {w}x{h}")
    return mnist_preprocess(gray, size=h, box=round(h * BOX / SIZE), name=str(path))
