"""Image-folder datasets: the layout of Keras' `image_dataset_from_directory` and torchvision's `ImageFolder`.

    PATH/train/<class>/*.png|jpg|...   and   PATH/test/<class>/...   (optional PATH/val/<class>/...)
    PATH/test/<class>/...              alone: evaluation-only data (no training split)
    PATH/<class>/...                   one split: a seeded, stratified `test_fraction` is held out for testing,
                                       or, for evaluation data (`whole`: eval, bench --data), all of it is test

Class names are the folder names sorted by Python's `sorted()` (Unicode code points: "B" before "a", "10"
before "2"), which is what both libraries do, so their class indices and ours agree. Hidden folders (".x")
are not classes (as in Keras; torchvision would take them). A labels file (`DataConfig.labels`) gives the class
order instead, like Keras' `class_names`. Images are found under each class folder at any depth (both
libraries walk subfolders) by extension: png, jpg/jpeg, bmp, gif, webp, tif/tiff, case-insensitive. Hidden
files and other extensions are ignored and counted in a note.

Reading the folder (`scan`) opens every file once: its sha256 (the fingerprint), then its header with Pillow
(size after EXIF orientation, colour or grey, no pixels decoded), Pillow's `verify` (PNG chunk checksums) and,
for JPEG, the end-of-image marker, so damaged files are found before any split is made and the splits are the
same at every later load. Unreadable images stop the load, named, unless `skip_bad_images`.

Splits are lazy (`ImageFiles`): a sized sequence of uint8 (n, H, W, C) that decodes only the images asked for,
each through edgeport.core.images (`load_image`, then `preprocess_image` with the dataset's InputSpec), so a
training image and an image given to `edgeport predict` are prepared identically. Evaluation reads them in
batches and never holds a whole folder in memory; training calls `np.asarray(split)` once (Keras fits from
memory), which decodes the split with a progress bar and keeps the array. A split small enough to keep
(`ImageFiles.KEEP_BYTES`) keeps what it decoded, so evaluating many files does not decode it many times.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport.core.data import DEFAULT_VAL_SIZE, VAL_SHARE, DataConfig, Dataset, read_labels_file
from edgeport.core.errors import DataError, EdgeportError
from edgeport.core.images import MAX_PIXELS, load_image, preprocess_image
from edgeport.core.spec import InputSpec

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # what Pillow reads here
SPLITS = ("train", "val", "validation", "test")  # top-level folder names that make the split layout
PROGRESS_MIN = 2000  # files: show a progress bar from this many on
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})  # Pillow modes
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class ImageFile:
    """One image file as its header describes it."""

    path: str  # absolute
    label: int  # class index
    height: int  # after EXIF orientation, as load_image will give it
    width: int
    colour: bool  # not a grey mode (a palette image is colour unless every palette entry is grey)
    error: str | None = None  # why it cannot be used, or None


# ---- reading the folder ------------------------------------------------------------------------------------


def load_image_folder(path: Path, cfg: DataConfig) -> Dataset:
    """The Dataset of an image folder: lazy splits, the spec the images imply, a fingerprint of every file."""
    path = Path(path).resolve()
    layout = find_layout(path)
    names = _class_names(path, layout, cfg)
    index = {n: i for i, n in enumerate(names)}
    notes: list[str] = []
    ignored: Counter = Counter()
    if "all" not in layout:  # beside train/ and test/: anything else is not data
        used = set(layout.values())
        ignored.update("hidden" if e.name.startswith(".") else "outside class folders" for e in os.scandir(path)
                       if Path(e.path) not in used)
    listed = {split: _list_split(folder, index, ignored) for split, folder in layout.items()}
    ignored = +ignored  # drop the zero counts
    if ignored:
        notes.append(f"ignored {sum(ignored.values())} file(s) or folder(s): "
                     + ", ".join(f"{n} {what}" for what, n in sorted(ignored.items())))
    scanned, digests = scan(path, listed)
    scanned = _drop_bad(scanned, cfg, notes)
    for split, images in scanned.items():
        present = {im.label for im in images}
        for name, folder in _class_folders(layout[split]):
            if index[name] not in present:
                raise DataError(f"{folder}: no readable images left in this class folder")
    every = [im for images in scanned.values() for im in images]
    channels, size = _channels(every, cfg, notes), _size(every, cfg, notes)
    spec = InputSpec(size[0], size[1], channels, labels=tuple(names),
                     preprocessing=cfg.preprocessing or "resize", resize=cfg.resize)
    if spec.preprocessing == "mnist" and (spec.height != spec.width or spec.height < 8):
        raise DataError(f"{path}: mnist preprocessing makes square images of at least 8x8, and these are "
                        f"{spec.height}x{spec.width}; give --image-size N")
    if spec.preprocessing == "none" and any((im.height, im.width) != size for im in every):
        raise DataError(f"{path}: preprocessing none takes images as they are, but not all are "
                        f"{size[0]}x{size[1]}; use resize preprocessing")
    splits = _split(scanned, cfg, path)
    if "val" in layout and cfg.val_size:  # 0: what evaluation asks for, having no use for a validation split
        notes.append(f"--val-size {cfg.val_size} not used: {layout['val'].name}/ is the validation split "
                     f"({len(splits['val'])} images)")
    if "all" in layout and cfg.whole:
        notes.append(f"{path} has no train/ and test/ folders: all {len(splits['test'])} of its images are the "
                     "evaluation set")
    made = {k: ImageFiles([im.path for im in v], spec, name=k) for k, v in splits.items()}
    labels = {k: np.array([im.label for im in v], np.int64) for k, v in splits.items()}
    for split in ("val", "test"):
        missing = sorted(set(range(len(names))) - set(labels[split].tolist()))
        if missing and len(labels[split]) and split in layout:
            notes.append(f"{split}/ has no images of {len(missing)} class(es): "
                         + ", ".join(names[i] for i in missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return Dataset(train_images=made["train"], train_labels=labels["train"], val_images=made["val"],
                   val_labels=labels["val"], test_images=made["test"], test_labels=labels["test"], spec=spec,
                   source=str(path), kind="folder", files=digests, notes=tuple(notes))


def find_layout(path: Path) -> dict[str, Path]:
    """{"train"|"val"|"test"|"all": folder}: which layout `path` has, or DataError saying what was expected."""
    if not path.is_dir():
        raise DataError(f"{path}: data folder not found")
    subdirs = {d.name: d for d in _subdirs(path)}
    val = subdirs.get("val") or subdirs.get("validation")
    if "train" in subdirs or "test" in subdirs:
        if "test" not in subdirs:
            hint = " (rename val/ to test/: validation is then carved from train/)" if val else ""
            raise DataError(f"{path}: has train/ but no test/ beside it; expected PATH/train/<class>/ and "
                            f"PATH/test/<class>/{hint}")
        layout = {"test": subdirs["test"]}
        if "train" in subdirs:
            layout["train"] = subdirs["train"]
            if val is not None:
                layout["val"] = val
        for name, folder in layout.items():
            if not any(_has_image(d) for d in _subdirs(folder)):
                raise DataError(f"{folder}: no class folders with images in this {name} split; expected "
                                f"{folder}/<class>/*.png|jpg|...")
        return layout
    if not any(_has_image(d) for d in subdirs.values()):
        loose = sum(e.is_file() and e.name.lower().endswith(EXTENSIONS) for e in os.scandir(path))
        hint = f" (its {loose} images need class folders: PATH/<class>/)" if loose else ""
        raise DataError(f"{path}: no dataset here: no IDX files and no class folders with images{hint}; expected "
                        "PATH/<class>/*.png|jpg|..., or PATH/train/<class>/ and PATH/test/<class>/, the four "
                        "IDX files, or a .npz file")
    return {"all": path}


def _class_names(path: Path, layout: dict[str, Path], cfg: DataConfig) -> list[str]:
    """Sorted folder names of the split that defines the classes (train, else the only one), or the labels file's
    order; every other split's class folders must be among them."""
    first = layout.get("train") or layout.get("all") or layout["test"]
    found = sorted(name for name, _ in _class_folders(first))
    names = found
    if cfg.labels is not None:
        names = read_labels_file(cfg.labels)
        unknown = [n for n in found if n not in names]
        if unknown:
            raise DataError(f"{cfg.labels}: does not name the class folder(s) {', '.join(unknown[:5])} of {first}")
    if len(names) < 2:
        raise DataError(f"{first}: only one class ({names[0] if names else 'none'}); a classifier needs at "
                        "least two class folders")
    for split, folder in layout.items():
        for name, sub in _class_folders(folder):
            if name not in names:
                raise DataError(f"{sub}: class {name!r} of {split}/ is not a class of {first.name}/ "
                                f"({', '.join(names[:8])}{' ...' if len(names) > 8 else ''})")
    return names


def _list_split(folder: Path, index: dict[str, int], ignored: Counter) -> list[tuple[str, int]]:
    """(path, class index) of every image file under each class folder, sorted by path within a class."""
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            ignored["hidden"] += 1
        elif not entry.is_dir():
            ignored["outside class folders"] += 1
    out = []
    for name, sub in _class_folders(folder):
        found = []
        for dirpath, dirnames, filenames in os.walk(sub):
            ignored["hidden"] += sum(d.startswith(".") for d in dirnames)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in filenames:
                if f.startswith("."):
                    ignored["hidden"] += 1
                elif f.lower().endswith(EXTENSIONS):
                    found.append(os.path.join(dirpath, f))
                else:
                    ignored[f"not images ({Path(f).suffix.lower() or 'no extension'})"] += 1
        if not found:
            raise DataError(f"{sub}: empty class folder (no {'/'.join(e[1:] for e in EXTENSIONS)} files); add "
                            "images or remove it")
        out += [(p, index[name]) for p in sorted(found)]
    return out


def scan(root: Path, listed: dict[str, list[tuple[str, int]]]) -> tuple[dict[str, list[ImageFile]], dict[str, str]]:
    """Read every listed file once: its header (`ImageFile`) and its sha256. Returns the images per split and the
    fingerprint: one sha256 per split folder ("train/", "test/", "val/", or "./" for one split) over the sorted
    lines "path relative to root <TAB> file sha256", so it changes when any image changes, is added, removed or
    renamed, while train.json stays small for a folder of 100k files."""
    total = sum(len(v) for v in listed.values())
    out, digests = {}, {}
    with progress(total, f"reading {root.name}/") as advance:
        for split, items in listed.items():
            lines, images = [], []
            for p, label in items:
                try:
                    data = Path(p).read_bytes()
                except OSError as exc:
                    data, im = b"", ImageFile(p, label, 0, 0, False, f"cannot read file ({exc.strerror or exc})")
                else:
                    im = read_header(p, label, data)
                lines.append(f"{Path(p).relative_to(root).as_posix()}\t{hashlib.sha256(data).hexdigest()}\n")
                images.append(im)
                advance()
            key = "./" if split == "all" else f"{Path(items[0][0]).relative_to(root).parts[0]}/"
            digests[key] = hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()
            out[split] = images
    return out, digests


def read_header(path: str, label: int, data: bytes) -> ImageFile:
    """What Pillow's header says about one file, with `error` set when it is not a usable image."""
    from PIL import Image, UnidentifiedImageError

    def bad(why: str) -> ImageFile:
        return ImageFile(path, label, 0, 0, False, why)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    return bad(f"image is {w}x{h} = {w * h:,} pixels, over the limit of {MAX_PIXELS:,}; "
                               "downscale it first")
                if w < 1 or h < 1:
                    return bad(f"image has no pixels ({w}x{h})")
                orientation = im.getexif().get(0x0112) if im.format != "PNG" or "exif" in im.info else None
                colour = _is_colour(im)
                fmt = im.format
                im.verify()  # PNG: every chunk's CRC, up to IEND; other formats: what Pillow checks
            if fmt == "JPEG" and not data.rstrip(b"\0")[-2:] == b"\xff\xd9":
                with Image.open(io.BytesIO(data)) as im:  # no end marker: truncated, unless it decodes in full
                    im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return bad(f"image is over the limit of {MAX_PIXELS:,} pixels")
    except UnidentifiedImageError:
        return bad("not an image Pillow can read")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow raises SyntaxError on some bad headers
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return bad(f"cannot decode image ({first[:160]})")
    if orientation in _ROTATED:
        w, h = h, w
    return ImageFile(path, label, h, w, colour)


def _is_colour(im) -> bool:
    if im.mode in GREY_MODES:
        return False
    if im.mode in ("P", "PA") and im.palette is not None and im.palette.rawmode in (None, "RGB"):
        raw = np.frombuffer(im.palette.palette, np.uint8)
        rgb = raw[: len(raw) // 3 * 3].reshape(-1, 3)
        return not (np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2]))
    return True


def _drop_bad(scanned: dict[str, list[ImageFile]], cfg: DataConfig, notes: list[str]) -> dict[str, list[ImageFile]]:
    bad = [im for images in scanned.values() for im in images if im.error]
    if not bad:
        return scanned
    first = bad[0]
    if not cfg.skip_bad_images:
        more = f" ({len(bad)} unreadable images in all)" if len(bad) > 1 else ""
        raise DataError(f"{first.path}: {first.error}{more}; fix or remove them, or pass --skip-bad-images")
    notes.append(f"skipped {len(bad)} unreadable image(s) (--skip-bad-images), e.g. {first.path}: {first.error}")
    return {k: [im for im in v if not im.error] for k, v in scanned.items()}


def _channels(images: list[ImageFile], cfg: DataConfig, notes: list[str]) -> int:
    """cfg.channels when given (mnist preprocessing: 1), else 3 when any image has colour, else 1."""
    colour = sum(im.colour for im in images)
    grey = len(images) - colour
    if cfg.channels is not None or cfg.preprocessing == "mnist":
        channels = cfg.channels or 1
        converted = colour if channels == 1 else grey
        why = f"{channels} channel(s) asked for" if cfg.channels else "mnist preprocessing"
        if converted:
            notes.append(f"{why}: {converted} {'colour' if channels == 1 else 'grayscale'} image(s) converted to "
                         f"{'grayscale' if channels == 1 else 'RGB'}")
        return channels
    if colour and grey:
        notes.append(f"images are mixed: {colour} colour, {grey} grayscale; read as RGB (3 channels), the "
                     "grayscale ones copied to R, G and B")
    return 3 if colour else 1


def _size(images: list[ImageFile], cfg: DataConfig, notes: list[str]) -> tuple[int, int]:
    """cfg.image_size when given, else the most common (height, width) (the first in path order on a tie)."""
    sizes = Counter((im.height, im.width) for im in images)
    if cfg.image_size is not None:
        size = tuple(cfg.image_size)
        why = "the size asked for"
    else:
        size = sizes.most_common(1)[0][0]
        why = f"the most common size, {sizes[size]} of {len(images)}"
    others = len(images) - sizes[size]
    if others:
        how = "mnist preprocessing" if cfg.preprocessing == "mnist" else f"resize: {cfg.resize}"
        notes.append(f"images come in {len(sizes)} size(s); {others} of {len(images)} not {size[0]}x{size[1]} "
                     f"({why}) are resized to it ({how})")
    return size


# ---- splits ------------------------------------------------------------------------------------------------


def _split(scanned: dict[str, list[ImageFile]], cfg: DataConfig, path: Path) -> dict[str, list[ImageFile]]:
    """train / val / test lists, each in a seeded random order (so `--test-limit N` takes a fair sample)."""
    if "all" in scanned and cfg.whole:
        pool, test = [], scanned["all"]
    elif "all" in scanned:
        pool = scanned["all"]
        n_test = round(len(pool) * cfg.test_fraction)
        if not 1 <= n_test <= len(pool) - 1:
            raise DataError(f"{path}: {len(pool)} images cannot give a test share of {cfg.test_fraction} "
                            "(at least one image each for test and train)")
        pool, test = _holdout(pool, n_test, np.random.default_rng([cfg.seed, 1]))
    else:
        pool, test = scanned.get("train", []), scanned["test"]
    pool = _shuffled(pool, cfg.seed, 2)[: cfg.train_limit]
    test = _shuffled(test, cfg.seed, 3)[: cfg.test_limit]
    if "val" in scanned:
        return {"train": pool, "val": _shuffled(scanned["val"], cfg.seed, 4), "test": test}
    n_val = cfg.val_size if cfg.val_size is not None else min(DEFAULT_VAL_SIZE, int(len(pool) * VAL_SHARE))
    if pool and not 0 <= n_val < len(pool):
        raise DataError(f"validation size {n_val} must be below the {len(pool)} training images of {path}")
    train, val = _holdout(pool, n_val if pool else 0, np.random.default_rng([cfg.seed, 5]))
    return {"train": train, "val": val, "test": test}


def _holdout(images: list[ImageFile], count: int, rng: np.random.Generator) -> tuple[list, list]:
    """Hold out `count` images, stratified: each class gives its share (largest remainders round up), keeping at
    least one image per class. Written here because scikit-learn's `train_test_split(stratify=)` is not a
    dependency of the TF-free core; the allocation is the same idea (proportional, remainders spread)."""
    if count == 0:
        return list(images), []
    labels = np.array([im.label for im in images])
    classes, sizes = np.unique(labels, return_counts=True)
    exact = count * sizes / len(images)
    take = np.minimum(np.floor(exact).astype(int), sizes - 1)
    for i in np.argsort(-(exact - np.floor(exact)), kind="stable"):  # remainders, largest first
        if take.sum() >= count:
            break
        if take[i] < sizes[i] - 1:
            take[i] += 1
    for i in range(len(classes)):  # still short (classes of one image): fill from classes with room
        take[i] += min(count - take.sum(), sizes[i] - 1 - take[i])
    held = np.zeros(len(images), bool)
    for c, k in zip(classes, take, strict=True):
        members = np.flatnonzero(labels == c)
        held[rng.permutation(members)[:k]] = True
    return [images[i] for i in np.flatnonzero(~held)], [images[i] for i in np.flatnonzero(held)]


def _shuffled(images: list[ImageFile], seed: int, stream: int) -> list[ImageFile]:
    order = np.random.default_rng([seed, stream]).permutation(len(images))
    return [images[i] for i in order]


# ---- the lazy split ----------------------------------------------------------------------------------------


class ImageFiles(Sequence):
    """A split of an image folder: a sized sequence of uint8 images (n, H, W, C) that decodes only what is indexed.

    `files[i]` is one (H, W, C) image; `files[a:b]` and `files[index_array]` are (n, H, W, C) batches.
    A split whose decoded images take at most `KEEP_BYTES` keeps each image once decoded, so evaluating many
    exported files decodes it once; a larger split keeps nothing and is decoded again on each pass, in the
    batches asked for, never all at once. `np.asarray(files)` decodes everything (with a progress bar for
    large splits) and keeps it: what training does. Every image goes through `load_image` then
    `preprocess_image` with `spec`."""

    KEEP_BYTES = 256 * 2**20  # decoded images kept in memory up to this size; larger splits stream

    def __init__(self, paths: Sequence[str], spec: InputSpec, name: str = "images"):
        self.paths = list(paths)
        self.spec = spec
        self.name = name
        self._kept: np.ndarray | None = None  # decoded images (all, or those `_have` marks)
        self._have: np.ndarray | None = None  # bool per image: decoded into `_kept`; None when all are

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        h, w, c = self.spec.image_shape
        return f"ImageFiles({len(self)} {self.name} images, {h}x{w}x{c})"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.spec.image_shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def __getitem__(self, key):
        if isinstance(key, int | np.integer):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"image {key} of {len(self)}")
            return self._get(np.array([i]))[0]
        if isinstance(key, slice):
            return self._get(np.arange(*key.indices(len(self))))
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if not np.issubdtype(index.dtype, np.integer) or index.ndim != 1:
            raise TypeError(f"ImageFiles take an int, a slice or a 1-d index array, not {key!r}")
        index = np.where(index < 0, index + len(self), index)
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        return self._get(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self._kept is None or self._have is not None:
            everything = np.arange(len(self))
            if self._kept is None:
                self._kept = self.decode(everything)
            else:
                self._get(everything)
            self._have = None
        if copy or (dtype is not None and np.dtype(dtype) != np.uint8):
            return self._kept.astype(dtype or np.uint8)
        return self._kept

    def _get(self, index: np.ndarray) -> np.ndarray:
        if self._kept is None and 0 < self.nbytes <= self.KEEP_BYTES:
            self._kept, self._have = np.empty(self.shape, np.uint8), np.zeros(len(self), bool)
        if self._kept is None:
            return self.decode(index)
        if self._have is not None:
            missing = np.unique(index[~self._have[index]])
            if len(missing):
                self._kept[missing] = self.decode(missing)
                self._have[missing] = True
        return self._kept[index]

    def decode(self, indices) -> np.ndarray:
        """uint8 (len(indices), H, W, C): the images at `indices`, decoded now."""
        indices = list(indices)
        out = np.empty((len(indices), *self.spec.image_shape), np.uint8)
        with progress(len(indices), f"decoding {self.name} images") as advance:
            for k, i in enumerate(indices):
                out[k] = self.decode_one(self.paths[i])
                advance()
        return out

    def decode_one(self, path: str) -> np.ndarray:
        try:
            image = load_image(path, channels=self.spec.channels)
            return preprocess_image(image, self.spec, name=path)
        except EdgeportError as exc:  # the header read fine when the folder was scanned, the pixels do not
            raise DataError(f"{exc} (while decoding the {self.name} split; fix or remove the file)") from None


# ---- helpers ------------------------------------------------------------------------------------------------


def _subdirs(path: Path) -> list[Path]:
    return sorted((Path(e.path) for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")),
                  key=lambda p: p.name)


def _class_folders(folder: Path) -> list[tuple[str, Path]]:
    return [(d.name, d) for d in _subdirs(folder)]


def _has_image(folder: Path) -> bool:
    for _, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(f.lower().endswith(EXTENSIONS) and not f.startswith(".") for f in filenames):
            return True
    return False


@contextmanager
def progress(total: int, description: str) -> Iterator[Callable[[], None]]:
    """A transient progress bar on stderr for `total` steps (none below PROGRESS_MIN); yields `advance()`."""
    if total < PROGRESS_MIN:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:  # logs: no blank lines
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
