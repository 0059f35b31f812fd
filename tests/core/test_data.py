import gzip
import shutil
import struct

import numpy as np
import pytest

from edgeport.core import data
from edgeport.core.errors import DataError


def write_idx(path, array: np.ndarray, compress=True):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_idx_dir(tmp_path, n_train=60, n_test=20, size=28, compress=True, names="t10k"):
    rng = np.random.default_rng(0)
    ext = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_train, size, size)), compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", rng.integers(0, 10, n_train), compress)
    write_idx(tmp_path / f"{names}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_test, size, size)), compress)
    write_idx(tmp_path / f"{names}-labels-idx1-ubyte{ext}", rng.integers(0, 10, n_test), compress)
    return tmp_path


def test_bundled_mnist_is_the_real_dataset():
    d = data.load_dataset()
    assert d.train_images.shape == (55000, 28, 28, 1) and d.val_images.shape == (5000, 28, 28, 1)
    assert d.test_images.shape == (10000, 28, 28, 1) and d.test_images.dtype == np.uint8
    assert d.num_classes == 10 and d.source == "bundled MNIST"
    assert d.spec.labels == tuple("0123456789") and d.spec.preprocessing == "mnist"
    # the published class counts of the MNIST test set
    assert np.bincount(d.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_validation_split_is_fixed_and_disjoint():
    a, b = data.load_dataset(), data.load_dataset()
    assert np.array_equal(a.val_images, b.val_images)
    full = data.read_idx(data.BUNDLED_DIR / "train-images-idx3-ubyte.gz")
    assert np.array_equal(a.val_images[..., 0], full[-5000:]) and np.array_equal(a.train_images[..., 0], full[:-5000])


def test_normalise_gives_float_nhwc_in_unit_range():
    x = data.normalise(np.array([[[0, 255]]], dtype=np.uint8)[..., None])
    assert x.dtype == np.float32 and x.shape == (1, 1, 2, 1) and x.min() == 0.0 and x.max() == 1.0


def test_checksum_mismatch_is_an_error(tmp_path, monkeypatch):
    for f in data.BUNDLED_DIR.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # a plausible but wrong label: only the checksum can catch it
    labels.write_bytes(gzip.compress(bytes(raw)))
    monkeypatch.setattr(data, "BUNDLED_DIR", tmp_path)
    with pytest.raises(DataError, match="MD5"):
        data.load_dataset()


@pytest.mark.parametrize("compress", [True, False])
def test_any_idx_directory_loads(tmp_path, compress):
    d = data.load_dataset(make_idx_dir(tmp_path, compress=compress), val_size=10)
    assert d.train_images.shape == (50, 28, 28, 1) and d.val_images.shape == (10, 28, 28, 1)
    assert d.test_images.shape == (20, 28, 28, 1)


def test_other_image_sizes_load(tmp_path):
    d = data.load_dataset(make_idx_dir(tmp_path, size=32), val_size=10)
    assert d.image_shape == (32, 32)


def test_fashion_mnist_from_debian_if_installed():
    root = "/usr/share/datasets/fashion-mnist"
    import os

    if not os.path.isdir(root):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    d = data.load_dataset(root)
    assert d.test_images.shape == (10000, 28, 28, 1) and d.num_classes == 10
    assert d.spec.preprocessing == "resize", "Fashion-MNIST items are not MNIST-style centred digits"


def test_directory_with_some_idx_files(tmp_path):
    make_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        data.load_dataset(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.load_dataset(tmp_path / "nope")


def test_truncated_idx_file(tmp_path):
    make_idx_dir(tmp_path, compress=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError, match="header says"):
        data.load_dataset(tmp_path, val_size=10)


def test_corrupt_gzip(tmp_path):
    make_idx_dir(tmp_path)
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(DataError, match="t10k-images"):
        data.load_dataset(tmp_path, val_size=10)


def test_not_an_idx_file(tmp_path):
    make_idx_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"hello world, not idx"))
    with pytest.raises(DataError, match="magic"):
        data.load_dataset(tmp_path, val_size=10)


def test_label_count_mismatch(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5))
    with pytest.raises(DataError, match="20 images but 5 labels"):
        data.load_dataset(tmp_path, val_size=10)


def test_labels_file_names_the_classes(tmp_path):
    make_idx_dir(tmp_path)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n\n")
    d = data.load_dataset(data.DataConfig(path=str(tmp_path), labels=str(tmp_path / "names.txt"), val_size=10))
    assert d.spec.labels == tuple(names)


def test_labels_file_with_too_few_names(tmp_path):
    make_idx_dir(tmp_path)
    (tmp_path / "names.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="names 2 classes, but the data has labels up to 9"):
        data.load_dataset(data.DataConfig(path=str(tmp_path), labels=str(tmp_path / "names.txt"), val_size=10))


def test_npz_dataset_rgb_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 12, 10, 3), dtype=np.uint8), y_train=rng.integers(0, 3, 40),
             x_test=rng.integers(0, 256, (9, 12, 10, 3), dtype=np.uint8), y_test=np.arange(9) % 3,
             labels=np.array(["cat", "dog", "bird"]))
    d = data.load_dataset(path)
    assert d.kind == "npz" and d.test_images.shape == (9, 12, 10, 3) and d.val_images.shape == (4, 12, 10, 3)
    assert d.spec.image_shape == (12, 10, 3) and d.spec.labels == ("cat", "dog", "bird")
    assert set(d.files) == {"d.npz"}


def test_npz_grouped_by_class_is_shuffled_so_every_split_holds_every_class(tmp_path):
    """Arrays made by concatenating per-class arrays: the validation split (the end of train), a --train-limit
    and calibration (the start) would each see one class. They are shuffled (seeded), with a note; mixed arrays
    keep their order."""
    rng = np.random.default_rng(0)
    path = tmp_path / "grouped.npz"
    y = np.repeat(np.arange(3), 40)  # 0...0 1...1 2...2
    x = (y[:, None, None] * 80 + rng.integers(0, 10, (120, 6, 6))).astype(np.uint8)
    np.savez(path, x_train=x, y_train=y, x_test=x[::4], y_test=y[::4])
    d = data.load_dataset(path, train_limit=60, test_limit=12)
    assert set(d.val_labels) == {0, 1, 2} and set(d.train_labels[:20]) == {0, 1, 2}
    assert set(d.test_labels) == {0, 1, 2}
    assert np.array_equal(d.train_images[:, 0, 0, 0] // 80, d.train_labels)  # images moved with their labels
    assert any("grouped by class" in n and "seed 0" in n for n in d.notes)
    again = data.load_dataset(path, train_limit=60, test_limit=12)
    assert np.array_equal(again.val_labels, d.val_labels)  # the same split on every load
    mixed = tmp_path / "mixed.npz"
    np.savez(mixed, x_train=x, y_train=np.tile(np.arange(3), 40), x_test=x[:30], y_test=y[:30])
    kept = data.load_dataset(mixed)
    assert np.array_equal(kept.train_labels, np.tile(np.arange(3), 40)[:108]) and not kept.notes


def test_npz_for_evaluation_only_and_float_images(tmp_path):
    path = tmp_path / "test.npz"
    np.savez(path, x_test=np.linspace(0, 1, 2 * 4 * 4).reshape(2, 4, 4), y_test=np.array([0, 1]))
    d = data.load_dataset(path)
    assert len(d.train_images) == 0 and d.test_images.dtype == np.uint8 and d.test_images.max() == 255
    assert any("converted to uint8" in n for n in d.notes)


@pytest.mark.parametrize("arrays,match", [
    ({"x_train": np.zeros((2, 4, 4), np.uint8), "y_train": np.zeros(2, np.int64)}, "no x_test and y_test"),
    ({"x_test": np.zeros((2, 4, 4), np.uint8), "y_test": np.zeros(3, np.int64)}, "2 images but 3 labels"),
    ({"x_test": np.zeros((2, 4, 4, 5), np.uint8), "y_test": np.zeros(2, np.int64)}, "C 1 or 3"),
    ({"x_test": np.full((2, 4, 4), 3.0), "y_test": np.zeros(2, np.int64)}, "uint8 0..255 or float in"),
    ({"x_test": np.zeros((2, 4, 4), np.uint8), "y_test": np.array([0.5, 1.0])}, "class indices"),
])
def test_bad_npz_is_a_one_line_error(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        data.load_dataset(tmp_path / "bad.npz")


def test_npz_with_object_arrays_is_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "evil.npz", x_test=np.array([{"a": 1}], dtype=object), y_test=np.zeros(1, np.int64))
    with pytest.raises(DataError, match="not a readable .npz of plain arrays"):
        data.load_dataset(tmp_path / "evil.npz")


def test_channels_and_size_are_converted_when_asked(tmp_path):
    d = data.load_dataset(data.DataConfig(path=str(make_idx_dir(tmp_path)), val_size=10, channels=3,
                                          image_size=(32, 30)))
    assert d.test_images.shape == (20, 32, 30, 3) and d.spec.image_shape == (32, 30, 3)
    assert np.array_equal(d.test_images[..., 0], d.test_images[..., 2])
    assert any("1 to 3 channel" in n for n in d.notes) and any("resized from 28x28 to 32x30" in n for n in d.notes)


def test_a_path_that_is_not_a_dataset(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="not a dataset"):
        data.load_dataset(tmp_path / "x.csv")
    with pytest.raises(DataError, match="not found"):
        data.load_dataset(tmp_path / "missing")
