"""Turn a real image file into what a model takes, the same way for datasets, `predict`, the server and the page.

Three recipes, named by the input spec's `preprocessing` (edgeport.core.spec). Pillow + numpy, no TensorFlow.
They are spelled out step by step so other implementations (the browser page's preprocess.js, firmware) can
match them; tests check the page gives the same pixels.

Every recipe starts with step 1, loading (`load_image`): refuse files over `MAX_PIXELS` (width x height, read
from the header before any pixel is decoded), apply the EXIF orientation, composite transparency onto white
(a drawing on a transparent canvas is dark ink on a light page), take 16-bit grey down to 8 bits by its high
byte (Pillow's own conversion would clip everything above 255), then convert to the spec's channels with
Pillow: "L" for grayscale (L = 0.299 R + 0.587 G + 0.114 B, Pillow's integer L24 formula), "RGB" for colour.

`resize` (any photo-like image; `resize_image`):
 R2. `pad` (the default): scale so the whole image fits in H x W keeping its aspect ratio (the scaled sides
     rounded, at least 1 px), with Pillow's BILINEAR filter (a convolution, antialiased when shrinking), and
     paste it centred (offset floor((H - h) / 2), floor((W - w) / 2)) on black. Keras'
     `image_dataset_from_directory(pad_to_aspect_ratio=True)` pads the same way.
     `crop`: scale so the image covers H x W (the short side fits), then cut the centre H x W out
     (torchvision's Resize + CenterCrop, Keras' `crop_to_aspect_ratio=True`).
     `stretch`: resize straight to H x W, ignoring the aspect ratio (Keras' loader default).
     An image already H x W is left as it is.

`mnist` (digit-like ink images, grayscale only; `mnist_preprocess`). MNIST digits are white ink on black,
cropped to their ink, scaled so the longest side is 20 px and centred by centre of mass in a 28x28 field:
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

The result is uint8 (28, 28), light on dark.

`none` (`as_is`, also `predict --no-preprocess`): step 1 only; the image must already be the model's size.

Every recipe returns uint8 (H, W, C); the model's own scaling (`InputSpec.normalise`: scale, mean, std,
layout) is applied afterwards by `Model.prepare`, not here. `preprocess_file` picks the recipe from a spec.
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


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS, channels: int = 1) -> np.ndarray:
    """Decode an image file to uint8 (H, W) grayscale or (H, W, 3) RGB; step 1 above. InputError on bad files."""
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
            if im.mode.startswith("I;16") or (im.mode == "I" and im.getextrema()[1] > 255):  # 16-bit grey: high byte
                im = Image.fromarray((np.asarray(im, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8), "L")
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(page, rgba)
            return np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
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


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (..., C) -> (..., channels): grey copied to R, G and B; RGB to grey with Pillow's L formula
    (L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16, the integer form of 0.299 R + 0.587 G + 0.114 B)."""
    x = np.asarray(images)
    if x.shape[-1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    rgb = x[..., :3].astype(np.uint32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)[
        ..., None]


def resize_image(image: np.ndarray, height: int, width: int, mode: str = "pad") -> np.ndarray:
    """Step R2 above: uint8 (h, w) or (h, w, C) -> uint8 (height, width[, C]), keeping the channels."""
    from PIL import Image

    x = np.asarray(image)
    h, w = x.shape[:2]
    if (h, w) == (height, width):
        return x
    pil = Image.fromarray(x)
    bilinear = Image.Resampling.BILINEAR
    if mode == "stretch":
        return np.asarray(pil.resize((width, height), bilinear), dtype=np.uint8)
    fit = min if mode == "pad" else max
    scale = fit(height / h, width / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    scaled = np.asarray(pil.resize((nw, nh), bilinear), dtype=np.uint8)
    if mode == "crop":
        top, left = (nh - height) // 2, (nw - width) // 2
        return np.ascontiguousarray(scaled[top : top + height, left : left + width])
    out = np.zeros((height, width, *x.shape[2:]), np.uint8)
    top, left = (height - nh) // 2, (width - nw) // 2
    out[top : top + nh, left : left + nw] = scaled
    return out


def as_is(image: np.ndarray, shape: tuple[int, int], name: str = "image") -> np.ndarray:
    """The `none` recipe (--no-preprocess): the decoded image unchanged, which must already be `shape` (H, W)."""
    g = np.asarray(image)
    if tuple(g.shape[:2]) != tuple(shape):
        raise InputError(f"{name}: image is {g.shape[1]}x{g.shape[0]} but the model takes {shape[1]}x{shape[0]}; "
                         "let edgeport preprocess it (drop --no-preprocess) or resize it first")
    return g


def preprocess_image(image: np.ndarray, spec, preprocess: bool = True, name: str = "image") -> np.ndarray:
    """A decoded image (uint8, the spec's channels) -> uint8 (H, W, C) by the spec's recipe (`none` when
    `preprocess` is False)."""
    h, w = spec.height, spec.width
    recipe = spec.preprocessing if preprocess else "none"
    if recipe == "mnist":
        if h != w or h < 8:
            raise InputError(f"{name}: MNIST preprocessing makes square images; the model takes {w}x{h}")
        out = mnist_preprocess(image, size=h, box=round(h * BOX / SIZE), name=name)
    elif recipe == "resize":
        out = resize_image(image, h, w, spec.resize)
    else:
        out = as_is(image, (h, w), name=name)
    return out if out.ndim == 3 else out[..., None]


def preprocess_file(path: str | Path, spec=None, preprocess: bool = True, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Load an image file and make it model input by `spec` (an InputSpec; None: an MNIST digit model):
    uint8 (H, W, C) for `Model.predict`."""
    if spec is None:
        from edgeport.core.spec import InputSpec

        spec = InputSpec(SIZE, SIZE, 1, preprocessing="mnist")
    image = load_image(path, max_pixels=max_pixels, channels=spec.channels)
    return preprocess_image(image, spec, preprocess=preprocess, name=str(path))
