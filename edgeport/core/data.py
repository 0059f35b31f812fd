"""IDX datasets (MNIST, Fashion-MNIST, ...): read, verify, split and normalise. numpy only.

The four original MNIST files ship inside the package (LeCun, Cortes and Burges, CC BY-SA 3.0) and are
checked against their published MD5 sums on every load, so a damaged install is an error, not a silently
wrong dataset. Any directory holding the same four IDX files (gzipped or not) loads the same way.
IDX is a 4-byte magic, big-endian dims, then raw bytes: a dozen lines of numpy, so no dependency.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.core.errors import DataError

BUNDLED_DIR = Path(__file__).parent / "mnist"
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
DEFAULT_VAL_SIZE = 5000  # the last 5,000 training images: a fixed split, the same on every machine


@dataclass(frozen=True)
class Dataset:
    """uint8 images (N, H, W) and int64 labels; `normalise` turns images into model input."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str  # "bundled MNIST" or the directory it came from
    files: dict[str, str] = field(default_factory=dict)  # part -> sha256, for lineage

    @property
    def num_classes(self) -> int:
        return int(max(self.train_labels.max(), self.test_labels.max())) + 1

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[1:3])


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, H, W, 1) in [0, 1]: the model's input convention."""
    return (images.astype(np.float32) / 255.0)[..., None]


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


def load_dataset(
    data_dir: str | Path | None = None,
    val_size: int = DEFAULT_VAL_SIZE,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Dataset:
    """Load MNIST (bundled, verified) or any IDX directory, with a fixed validation split.

    `train_limit` / `test_limit` keep the first N images (for quick runs and tests); the validation
    split is carved from the end of the (limited) training set.
    """
    if data_dir is None:
        verify_bundled()
        directory, source = BUNDLED_DIR, "bundled MNIST"
    else:
        directory, source = Path(data_dir), str(Path(data_dir).resolve())
    files = find_idx_files(directory)
    arrays = {part: read_idx(path) for part, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(
                f"{files[f'{split}_images']}: expected images (N, H, W) and labels (N,), "
                f"got {images.shape} and {labels.shape}"
            )
        if len(images) != len(labels):
            raise DataError(f"{directory}: {split} has {len(images)} images but {len(labels)} labels")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(f"{directory}: train and test images differ in size")
    train_x, train_y = arrays["train_images"], arrays["train_labels"].astype(np.int64)
    test_x, test_y = arrays["test_images"], arrays["test_labels"].astype(np.int64)
    if train_limit is not None:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    if test_limit is not None:
        test_x, test_y = test_x[:test_limit], test_y[:test_limit]
    if not 0 <= val_size < len(train_x):
        raise DataError(f"validation size {val_size} must be below the {len(train_x)} training images")
    cut = len(train_x) - val_size
    digests = {part: hashlib.sha256(path.read_bytes()).hexdigest() for part, path in files.items()}
    return Dataset(
        train_images=train_x[:cut],
        train_labels=train_y[:cut],
        val_images=train_x[cut:],
        val_labels=train_y[cut:],
        test_images=test_x,
        test_labels=test_y,
        source=source,
        files=digests,
    )
