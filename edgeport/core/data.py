"""Datasets for every stage, TF-free: IDX folders (MNIST and kin), image folders, and .npz arrays.

`load_dataset(DataConfig(path=...))` reads any of them into one `Dataset`: uint8 images (N, H, W, C) with int64
labels for train / validation / test, a fingerprint of the files it read, and the `InputSpec` the data implies
(size, channels, class names, preprocessing). The kind is told from the path: a `.npz` file, a folder with the
four IDX files, or a folder of class folders (see edgeport.core.folders). `path=None` is the bundled MNIST.

The four original MNIST files ship inside the package (LeCun, Cortes and Burges, CC BY-SA 3.0) and are
checked against their published MD5 sums on every load, so a damaged install is an error, not a silently
wrong dataset. IDX is a 4-byte magic, big-endian dims, then raw bytes: a dozen lines of numpy, no dependency.

Images of a split are any sized, sliceable sequence of uint8 (n, H, W, C) batches: a numpy array, or a lazy
list of image files that decodes only the slice asked for (`iter_batches`), so evaluating a 100k-image folder
never holds it all in memory.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeport.core.errors import ConfigError, DataError
from edgeport.core.files import sha256_file
from edgeport.core.spec import PREPROCESSING, RESIZE_MODES, InputSpec

BUNDLED_DIR = Path(__file__).parent / "mnist"
BUNDLED = "bundled MNIST"
MNIST_MD5 = {  # published checksums of the original files
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# Accepted spellings of each part: the original names, uncompressed, and the common "test"/".idx3-" variants.
_PATTERNS = {
    "train_images": ["train-images-idx3-ubyte", "train-images.idx3-ubyte"],
    "train_labels": ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"],
    "test_images": ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte", "test-images-idx3-ubyte"],
    "test_labels": ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte", "test-labels-idx1-ubyte"],
}
DEFAULT_VAL_SIZE = 5000  # MNIST: the last 5,000 training images, a fixed split, the same on every machine
VAL_SHARE = 0.1  # other datasets without a validation split: the last 10% of train, at most DEFAULT_VAL_SIZE
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test", "labels")


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how to read it; recorded in train.json so every later stage reads the same."""

    path: str | None = None  # None: the bundled MNIST; else an IDX folder, an image folder or a .npz file
    val_size: int | None = None  # validation images carved from train; None: 5000 for MNIST, else 10% (<= 5000)
    train_limit: int | None = None  # first N training images only (quick runs, tests)
    test_limit: int | None = None  # first N test images only
    labels: str | None = None  # a text file with one class name a line (IDX/.npz carry no names)
    channels: int | None = None  # 1 or 3 to convert every image; None: as the data is (folders: detected)
    image_size: tuple[int, int] | None = None  # (H, W) to resize to; None: the images' own (folders: most common)
    test_fraction: float = 0.2  # single-split image folders: the stratified share held out for testing
    whole: bool = False  # single-split image folders: all of it is the test set (eval/bench data), no split
    seed: int = 0  # seeds that split
    skip_bad_images: bool = False  # folders: count and skip unreadable images instead of stopping
    preprocessing: str | None = None  # the spec's recipe for image files; None: "mnist" for MNIST, else "resize"
    resize: str = "pad"  # the spec's resize mode: "pad" | "crop" | "stretch"

    def __post_init__(self):
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        if self.path is not None:
            object.__setattr__(self, "path", str(self.path))

    def validate(self) -> None:
        for name in ("val_size",):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= 0, got {v!r}")
        for name in ("train_limit", "test_limit"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {v!r}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"--channels must be 1 or 3, got {self.channels!r}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ConfigError(f"--image-size must be HxW with both >= 1, got {self.image_size!r}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"--test-fraction must be in (0, 1), got {self.test_fraction!r}")
        if self.preprocessing not in (None, *PREPROCESSING):
            raise ConfigError(f"--preprocessing must be one of {', '.join(PREPROCESSING)}, got {self.preprocessing!r}")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"--resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self) | {"image_size": list(self.image_size) if self.image_size else None}

    @classmethod
    def from_dict(cls, d: dict | None) -> DataConfig:
        d = dict(d or {})
        if "data_dir" in d:  # train.json of older runs kept the data settings flat in the training config
            d["path"] = d.pop("data_dir")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Dataset:
    """uint8 images (N, H, W, C) and int64 labels per split, the spec they imply, and where they came from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    spec: InputSpec  # size, channels, class names, preprocessing: what a model of this data takes
    source: str  # "bundled MNIST" or the resolved path it came from
    kind: str = "idx"  # "idx" | "folder" | "npz"
    files: dict[str, str] = field(default_factory=dict)  # file (image folders: split folder) -> sha256: fingerprint
    notes: tuple[str, ...] = ()  # what the loader changed or skipped, said once (converted images, ...)

    @property
    def num_classes(self) -> int:
        return len(self.spec.labels)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.spec.height, self.spec.width

    def fingerprint(self) -> dict:
        """For train.json: what was read, so a later stage (or person) can tell it is the same data."""
        return {"kind": self.kind, "source": self.source, "files_sha256": self.files, "train": len(self.train_images),
                "val": len(self.val_images), "test": len(self.test_images), "num_classes": self.num_classes,
                "image_shape": list(self.spec.image_shape), "notes": list(self.notes)}


def iter_batches(images, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive uint8 batches of a split's images (an array or a lazy file list), at most `batch_size` each."""
    for i in range(0, len(images), batch_size):
        yield np.asarray(images[i : i + batch_size])


def normalise(images: np.ndarray, spec: InputSpec | None = None) -> np.ndarray:
    """uint8 images -> float32 model input by `spec` (default: 1/255, no mean/std, NHWC): see InputSpec.normalise."""
    x = np.asarray(images)
    if spec is None:
        x = x if x.ndim == 4 else x[..., None]
        spec = InputSpec(x.shape[1], x.shape[2], x.shape[3])
    return spec.normalise(x)


# ---- IDX ---------------------------------------------------------------------------------------------------


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array, checking its header against its size."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{p}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{p}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{p}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{p}: IDX header says {dims} ({expected} bytes) but the file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx_files(data_dir: str | Path) -> dict[str, Path]:
    """Locate the four IDX parts in `data_dir`, or raise naming what is missing."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"{d}: data directory not found")
    found: dict[str, Path] = {}
    for part, stems in _PATTERNS.items():
        for stem in stems:
            for name in (stem + ".gz", stem):
                if (d / name).is_file():
                    found.setdefault(part, d / name)
    missing = [f"{_PATTERNS[p][0]}[.gz]" for p in _PATTERNS if p not in found]
    if missing:
        raise DataError(f"{d}: no IDX dataset here, missing {', '.join(missing)}")
    return found


def verify_bundled() -> None:
    """Check the packaged MNIST files against their published MD5 sums."""
    for name, md5 in MNIST_MD5.items():
        p = BUNDLED_DIR / name
        if not p.is_file():
            raise DataError(f"{p}: bundled MNIST file is missing (reinstall edgeport)")
        got = hashlib.md5(p.read_bytes()).hexdigest()
        if got != md5:
            raise DataError(f"{p}: MD5 {got} does not match the published {md5}; the file is corrupt")


def _load_idx(directory: Path, source: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    files = find_idx_files(directory)
    arrays = {part: read_idx(path) for part, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{files[f'{split}_images']}: expected images (N, H, W) and labels (N,), "
                            f"got {images.shape} and {labels.shape}")
        if len(images) != len(labels):
            raise DataError(f"{directory}: {split} has {len(images)} images but {len(labels)} labels")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(f"{directory}: train and test images differ in size")
    digests = {path.name: sha256_file(path) for path in files.values()}
    return arrays, digests


# ---- .npz ----------------------------------------------------------------------------------------------------


def _load_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str], list[str] | None, list[str]]:
    """x_test / y_test required, x_train / y_train optional (evaluation only), labels optional. No pickle."""
    notes: list[str] = []
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            missing = [k for k in ("x_test", "y_test") if k not in keys]
            if missing:
                raise DataError(f"{path}: no {' and '.join(missing)} in this .npz; expected arrays "
                                f"{', '.join(NPZ_KEYS[:4])} (x_train/y_train optional) and optionally labels")
            if ("x_train" in keys) != ("y_train" in keys):
                raise DataError(f"{path}: x_train and y_train come together; this .npz has only one of them")
            arrays = {k: z[k] for k in NPZ_KEYS[:4] if k in keys}
            labels = [str(x) for x in z["labels"].reshape(-1)] if "labels" in keys else None
    except DataError:
        raise
    except (OSError, ValueError, KeyError) as exc:  # allow_pickle=False: object arrays are refused here
        raise DataError(f"{path}: not a readable .npz of plain arrays ({str(exc).splitlines()[0][:160]})") from None
    for split in ("train", "test"):
        if f"x_{split}" not in arrays:
            continue
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"].reshape(-1)
        if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
            raise DataError(f"{path}: x_{split} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) with C 1 or 3")
        if len(x) != len(y):
            raise DataError(f"{path}: {split} has {len(x)} images but {len(y)} labels")
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DataError(f"{path}: y_{split} must hold class indices (integers >= 0), got {y.dtype}")
        if x.dtype != np.uint8:
            if not np.issubdtype(x.dtype, np.floating) or (x.size and (x.min() < 0 or x.max() > 1)):
                raise DataError(f"{path}: x_{split} must be uint8 0..255 or float in [0, 1], got {x.dtype} "
                                f"{x.min() if x.size else ''}..{x.max() if x.size else ''}")
            x = np.rint(x * 255).astype(np.uint8)
            notes.append(f"x_{split} was float in [0, 1]: converted to uint8 pixels (x 255, rounded)")
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x if x.ndim == 4 else x[..., None], y.astype(np.int64)
    if "x_train" in arrays and arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{path}: x_train images are {arrays['x_train'].shape[1:]} but x_test images "
                        f"{arrays['x_test'].shape[1:]}")
    return arrays, {path.name: sha256_file(path)}, labels, notes


# ---- one entry point -----------------------------------------------------------------------------------------


def load_dataset(data: DataConfig | str | Path | None = None, val_size: int | None = None,
                 train_limit: int | None = None, test_limit: int | None = None) -> Dataset:
    """Load the dataset `data` describes (a DataConfig, or just a path; None: the bundled MNIST).

    `val_size` / `train_limit` / `test_limit`, when given, override the config's. The validation split is
    carved from the end of the (limited) training split, so it is the same on every machine."""
    cfg = data if isinstance(data, DataConfig) else DataConfig(path=None if data is None else str(data))
    overrides = {k: v for k, v in (("val_size", val_size), ("train_limit", train_limit), ("test_limit", test_limit))
                 if v is not None}
    cfg = replace(cfg, **overrides)
    cfg.validate()
    notes: list[str] = []
    names: list[str] | None = None
    if cfg.path is None:
        verify_bundled()
        arrays, digests = _load_idx(BUNDLED_DIR, BUNDLED)
        source, kind, names = BUNDLED, "idx", [str(i) for i in range(10)]
    else:
        p = Path(cfg.path).expanduser()
        source = str(p.resolve())
        if p.is_file() and p.suffix.lower() == ".npz":
            arrays, digests, names, notes = _load_npz(p)
            kind = "npz"
            arrays = {"train_images": arrays.get("x_train"), "train_labels": arrays.get("y_train"),
                      "test_images": arrays["x_test"], "test_labels": arrays["y_test"]}
        elif p.is_dir() and _has_idx(p):
            arrays, digests = _load_idx(p, source)
            kind = "idx"
        elif p.is_dir():
            from edgeport.core.folders import load_image_folder

            return load_image_folder(p, cfg)
        elif not p.exists():
            raise DataError(f"{p}: data path not found")
        else:
            raise DataError(f"{p}: not a dataset; expected a folder of IDX files, a folder of class folders of "
                            "images, or a .npz with x_train, y_train, x_test, y_test")
    return _from_arrays(arrays, digests, cfg, source, kind, names, notes)


def _from_arrays(arrays: dict, digests: dict, cfg: DataConfig, source: str, kind: str, names: list[str] | None,
                 notes: list[str]) -> Dataset:
    """Split, convert and describe in-memory arrays (IDX and .npz)."""
    test_x, test_y = _nhwc(arrays["test_images"]), arrays["test_labels"].astype(np.int64)
    if arrays.get("train_images") is not None:
        train_x, train_y = _nhwc(arrays["train_images"]), arrays["train_labels"].astype(np.int64)
    else:  # evaluation-only data
        train_x, train_y = test_x[:0], test_y[:0]
    if source != BUNDLED:  # the bundled files are in their published, mixed order: the fixed split stays
        (train_x, train_y), note = _mix_if_grouped(train_x, train_y, "train", cfg.seed, 0)
        notes += note
        if cfg.test_limit is not None:  # only a limit makes the test order matter
            (test_x, test_y), note = _mix_if_grouped(test_x, test_y, "test", cfg.seed, 1)
            notes += note
    if cfg.train_limit is not None:
        train_x, train_y = train_x[: cfg.train_limit], train_y[: cfg.train_limit]
    if cfg.test_limit is not None:
        test_x, test_y = test_x[: cfg.test_limit], test_y[: cfg.test_limit]
    val = cfg.val_size if cfg.val_size is not None else (
        DEFAULT_VAL_SIZE if source == BUNDLED else min(DEFAULT_VAL_SIZE, int(len(train_x) * VAL_SHARE)))
    if len(train_x) and not 0 <= val < len(train_x):
        raise DataError(f"validation size {val} must be below the {len(train_x)} training images")
    val = val if len(train_x) else 0
    labels = _class_names(cfg, names, (train_y, test_y), source)
    train_x, test_x, more = _fit_images((train_x, test_x), cfg)
    notes += more
    h, w, c = test_x.shape[1:]
    mnist_like = source == BUNDLED
    spec = InputSpec(h, w, c, labels=tuple(labels), preprocessing=cfg.preprocessing or (
        "mnist" if mnist_like else "resize"), resize=cfg.resize)
    cut = len(train_x) - val
    return Dataset(train_images=train_x[:cut], train_labels=train_y[:cut], val_images=train_x[cut:],
                   val_labels=train_y[cut:], test_images=test_x, test_labels=test_y, spec=spec, source=source,
                   kind=kind, files=digests, notes=tuple(notes))


def _mix_if_grouped(x: np.ndarray, y: np.ndarray, split: str, seed: int, stream: int) -> tuple[tuple, list[str]]:
    """Shuffle a split (seeded) whose labels come grouped by class, one block per class, as arrays built by
    concatenating per-class arrays do: its first N images (--train-limit, calibration) and its last ones (the
    validation split) would otherwise hold only one or two classes. Any other order is kept as given."""
    classes = len(np.unique(y))
    if classes < 2 or np.count_nonzero(np.diff(y)) != classes - 1:
        return (x, y), []
    order = np.random.default_rng([seed, 6, stream]).permutation(len(y))
    return (x[order], y[order]), [f"{split} labels come grouped by class ({classes} blocks): shuffled with seed "
                                  f"{seed} before splitting, so every split and subset holds every class"]


def read_labels_file(path: str | Path) -> list[str]:
    """Class names, one a line (blank lines and surrounding spaces ignored)."""
    p = Path(path)
    try:
        names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{p}: labels file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not a readable text file of class names ({exc})") from None
    if not names:
        raise DataError(f"{p}: labels file is empty; expected one class name a line")
    if len(set(names)) != len(names):
        raise DataError(f"{p}: class names repeat; each line must name a different class")
    return names


def _class_names(cfg: DataConfig, names: list[str] | None, labels: tuple[np.ndarray, ...], where: str) -> list[str]:
    """The class names: --labels, else the data's own, else the class indices."""
    present = max((int(y.max()) for y in labels if len(y)), default=-1) + 1
    if cfg.labels is not None:
        names, where = read_labels_file(cfg.labels), cfg.labels
    if names is None:
        return [str(i) for i in range(present)]
    if present > len(names):
        raise DataError(f"{where}: names {len(names)} classes, but the data has labels up to {present - 1}")
    return names


def _fit_images(splits: tuple, cfg: DataConfig) -> tuple:
    """Convert channels and resize in-memory images when the config asks; returns the splits and notes."""
    from edgeport.core.images import resize_image, to_channels

    notes, out = [], []
    for x in splits:
        if cfg.channels is not None and x.shape[-1] != cfg.channels:
            x = to_channels(x, cfg.channels)
        if cfg.image_size is not None and tuple(x.shape[1:3]) != cfg.image_size and len(x):
            h, w = cfg.image_size
            x = np.stack([np.atleast_3d(resize_image(im if im.shape[-1] != 1 else im[..., 0], h, w, cfg.resize))
                          for im in x])
        out.append(x)
    first = splits[1]
    if cfg.channels is not None and first.shape[-1] != cfg.channels:
        notes.append(f"images converted from {first.shape[-1]} to {cfg.channels} channel(s)")
    if cfg.image_size is not None and tuple(first.shape[1:3]) != cfg.image_size:
        notes.append(f"images resized from {first.shape[1]}x{first.shape[2]} to {cfg.image_size[0]}x"
                     f"{cfg.image_size[1]} ({cfg.resize})")
    return (*out, notes)


def _nhwc(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 4 else x[..., None]


def _has_idx(p: Path) -> bool:
    return any((p / f"{stem}{ext}").is_file() for stems in _PATTERNS.values() for stem in stems for ext in ("", ".gz"))

