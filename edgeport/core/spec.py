"""The input spec: what a model takes, in one typed object that every stage reads instead of assuming it.

The dataset loader makes it (image size and channels from the images, class names from the folders or a
labels file); training writes it into train.json, export into the manifest and into every exported file's
metadata, and the runtime reads it back from the file (`Model.spec`) to prepare images for predict, eval,
bench, TFLM, the report, the server and the page. A file edgeport did not write gets a spec derived from
its input tensor (`spec_for_tensor`), with the defaults said out loud by the caller.

Pixels become model input in one way everywhere (`InputSpec.normalise`, `to_model_input` in the page):

    x = pixel * scale              pixel is uint8 0..255; scale is 1/255 for models that take [0, 1]
    x = (x - mean[c]) / std[c]     per channel c (one value applies to every channel)
    NHWC, or NCHW when layout says so

`preprocessing` names what a real image file goes through before that (edgeport.core.images):
`mnist` (digit-like ink images: crop to the ink, 20 px box, centre of mass in 28x28), `resize` (keep the
aspect ratio, then `pad` or centre-`crop` to the model's size, or `stretch` to it), `none` (the image must
already be the model's size).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from fractions import Fraction

import numpy as np

from edgeport.core.errors import ConfigError, InputError

PREPROCESSING = ("mnist", "resize", "none")
RESIZE_MODES = ("pad", "crop", "stretch")
LAYOUTS = ("NHWC", "NCHW")
CHANNELS = (1, 3)
# The keys every exported file carries (ONNX metadata_props, the TFLite "edgeport" metadata entry): flat strings.
METADATA_KEYS = ("image_shape", "layout", "input_scale", "norm_mean", "norm_std", "labels", "preprocessing",
                 "resize")


@dataclass(frozen=True)
class InputSpec:
    """What one model input image is: size, channels, scaling and the class names of the output."""

    height: int
    width: int
    channels: int = 1  # 1 (grayscale) or 3 (RGB)
    layout: str = "NHWC"  # where the channel axis sits in the model's input tensor: "NHWC" or "NCHW"
    scale: float = 1 / 255  # pixel (0..255) * scale; 1/255 gives [0, 1], 1.0 raw pixels, 1/127.5 then mean 1: [-1, 1]
    mean: tuple[float, ...] = (0.0,)  # subtracted after scaling: one value, or one per channel
    std: tuple[float, ...] = (1.0,)  # divided after subtracting the mean: one value, or one per channel
    labels: tuple[str, ...] = ()  # class names, index = output position; () when nobody said
    preprocessing: str = "resize"  # what an image file goes through first: "mnist" | "resize" | "none"
    resize: str = "pad"  # with preprocessing "resize": keep aspect then "pad" or centre-"crop"; or "stretch"

    def __post_init__(self):
        for name in ("height", "width"):
            if not (isinstance(getattr(self, name), int | np.integer) and getattr(self, name) >= 1):
                raise ConfigError(f"input {name} must be a whole number >= 1, got {getattr(self, name)!r}")
        if self.channels not in CHANNELS:
            raise ConfigError(f"input channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"input layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if not (isinstance(self.scale, int | float) and np.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"input scale must be a number > 0, got {self.scale!r}")
        for name in ("mean", "std"):
            value = tuple(float(v) for v in np.atleast_1d(getattr(self, name)))
            if len(value) not in (1, self.channels) or not all(np.isfinite(value)):
                raise ConfigError(f"input {name} must be one finite number or one per channel ({self.channels}), "
                                  f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"input std must be > 0, got {self.std}")
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        if self.preprocessing not in PREPROCESSING:
            raise ConfigError(f"preprocessing must be one of {', '.join(PREPROCESSING)}, got {self.preprocessing!r}")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if self.preprocessing == "mnist" and self.channels != 1:
            raise ConfigError("mnist preprocessing makes grayscale digit images; this input has 3 channels")
        for name in ("height", "width", "channels"):
            object.__setattr__(self, name, int(getattr(self, name)))

    # --- shapes ------------------------------------------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image as the dataset holds it (always channels last)."""
        return self.height, self.width, self.channels

    def tensor_shape(self, batch: int = -1) -> tuple[int, int, int, int]:
        """The model input tensor's shape in this spec's layout."""
        h, w, c = self.image_shape
        return (batch, h, w, c) if self.layout == "NHWC" else (batch, c, h, w)

    @property
    def num_classes(self) -> int | None:
        return len(self.labels) or None

    def with_labels(self, labels) -> InputSpec:
        return replace(self, labels=tuple(labels))

    def replace(self, **changes) -> InputSpec:
        return replace(self, **changes)

    # --- pixels -> model input -----------------------------------------------------------------------------
    def normalise(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W, C), (N, H, W) or one (H, W[, C]) -> float32 model input in this layout.

        Float images are taken as pixel / 255 in [0, 1] (what numpy users usually hold), so both give the same
        input. The arithmetic is the one the training stage used, so runtime and Keras see identical inputs."""
        x = self.as_batch(images)
        if x.dtype == np.uint8:
            x = x.astype(np.float32)
        elif x.dtype in (np.float16, np.float32, np.float64):
            x = x.astype(np.float32)
            if x.size and (not np.isfinite(x).all() or x.min() < -1e-6 or x.max() > 1 + 1e-6):
                raise InputError(f"float images must be in [0, 1] and finite (got {x.min():.3g}..{x.max():.3g}); "
                                 "pass uint8 0..255 images instead")
            x = x * np.float32(255.0)
        else:
            raise InputError(f"expected uint8 or float images, got dtype {x.dtype}")
        if self.scale == 1 / 255:  # the common case, as division: bit-identical to images / 255.0
            x = x / np.float32(255.0)
        else:
            x = x * np.float32(self.scale)
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        if (mean != 0).any() or (std != 1).any():
            x = (x - mean) / std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self.layout == "NCHW" else x

    def as_batch(self, images: np.ndarray) -> np.ndarray:
        """Images as (N, H, W, C) channels-last, or InputError naming the shape that was expected."""
        x = np.asarray(images)
        h, w, c = self.image_shape
        if x.ndim == 2 or (x.ndim == 3 and x.shape == (h, w, c)):
            x = x[None]  # one image
        if x.ndim == 3 and c == 1:
            x = x[..., None]  # (N, H, W) grayscale
        if x.ndim != 4 or x.shape[1:] != (h, w, c):
            want = f"(N, {h}, {w}, {c})" + (f" or (N, {h}, {w})" if c == 1 else "")
            raise InputError(f"expected images of shape {want}, got {np.asarray(images).shape}")
        return x

    # --- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready, for train.json and the manifest."""
        d = asdict(self)
        return d | {"mean": list(self.mean), "std": list(self.std), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "input spec") -> InputSpec:
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected an object, got {type(d).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def to_metadata(self) -> dict[str, str]:
        """The flat string map embedded in exported files (see METADATA_KEYS); read back by `from_metadata`."""
        one = len(set(self.mean)) == 1 and len(set(self.std)) == 1
        return {
            "image_shape": json.dumps(list(self.image_shape)),
            "layout": self.layout,
            "input_scale": _fraction(self.scale),
            "norm_mean": repr(self.mean[0]) if one else json.dumps(list(self.mean)),
            "norm_std": repr(self.std[0]) if one else json.dumps(list(self.std)),
            "labels": json.dumps(list(self.labels)),
            "preprocessing": self.preprocessing,
            "resize": self.resize,
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], fallback: InputSpec) -> InputSpec:
        """The spec a file's metadata describes; keys it lacks (older or foreign files) come from `fallback`.

        Raises ConfigError when a key is present but unreadable: a damaged file must not be guessed at."""
        changes: dict = {}
        try:
            if "image_shape" in metadata:
                h, w, c = (int(v) for v in json.loads(metadata["image_shape"]))
                changes.update(height=h, width=w, channels=c)
            if "layout" in metadata:
                changes["layout"] = metadata["layout"]
            if "input_scale" in metadata:
                changes["scale"] = float(Fraction(metadata["input_scale"].strip()))
            for key, name in (("norm_mean", "mean"), ("norm_std", "std")):
                if key in metadata:
                    changes[name] = tuple(float(v) for v in np.atleast_1d(json.loads(metadata[key])))
            if "labels" in metadata:
                labels = json.loads(metadata["labels"])
                if not isinstance(labels, list):
                    raise ValueError("labels is not a list")
                changes["labels"] = tuple(str(x) for x in labels)
            for key in ("preprocessing", "resize"):
                if key in metadata:
                    changes[key] = metadata[key]
        except (ValueError, TypeError, ZeroDivisionError) as exc:
            raise ConfigError(f"the file's edgeport metadata is unreadable ({exc})") from None
        return replace(fallback, **changes)


def spec_for_tensor(shape: tuple[int, ...], name: str = "model") -> InputSpec:
    """A spec from an input tensor shape alone, for files that carry no edgeport metadata.

    NHWC when the last axis is 1 or 3, NCHW when the second is (PyTorch-style ONNX), (N, H, W) as grayscale.
    Dynamic height/width (-1) become 224 for RGB and 28 for grayscale. A 28x28x1 input gets MNIST
    preprocessing, anything else `resize`; scale 1/255, no mean/std, no labels: the caller says so."""
    s = tuple(int(d) for d in shape)
    if len(s) == 4 and s[-1] in CHANNELS:
        h, w, c, layout = s[1], s[2], s[3], "NHWC"
    elif len(s) == 4 and s[1] in CHANNELS:
        h, w, c, layout = s[2], s[3], s[1], "NCHW"
    elif len(s) == 3:
        h, w, c, layout = s[1], s[2], 1, "NHWC"
    else:
        raise InputError(f"{name}: input has shape {list(s)}, not an image (N, H, W, C) with 1 or 3 channels, "
                         "(N, C, H, W) or (N, H, W)")
    default = 224 if c == 3 else 28
    h, w = (h if h > 0 else default), (w if w > 0 else default)
    mnist = (h, w, c) == (28, 28, 1)
    return InputSpec(h, w, c, layout, preprocessing="mnist" if mnist else "resize")


def parse_image_size(value: str) -> tuple[int, int]:
    """"HxW" or "N" (square) -> (H, W)."""
    try:
        parts = [int(p) for p in str(value).lower().split("x")]
        if len(parts) == 1:
            parts *= 2
        h, w = parts
        if h < 1 or w < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--image-size takes HxW or N (pixels, >= 1), e.g. 32x32; got {value!r}") from None
    return h, w


def _fraction(x: float) -> str:
    """1/255 -> "1/255", 1.0 -> "1", otherwise repr: readable in a metadata viewer and exact to read back."""
    f = Fraction(x).limit_denominator(100000)
    return f"{f.numerator}/{f.denominator}" if float(f) == x and f.denominator != 1 else (
        str(f.numerator) if float(f) == x else repr(x))


