"""Image-folder datasets (edgeport.core.folders): layouts, splits, channels and sizes, lazy test splits, the
fingerprint and bad input. Every folder is generated here with Pillow, a few pixels an image."""

import re

import numpy as np
import pytest
from PIL import Image

from edgeport.core import folders
from edgeport.core.data import DataConfig, load_dataset
from edgeport.core.errors import DataError
from edgeport.core.images import preprocess_file


def make_folder(root, classes=("cat", "dog"), n=10, size=(6, 8), mode="RGB", split=None, ext="png", seed=0):
    """n images per class of `size` (H, W) under root/<split>/<class>/ (root/<class>/ when split is None)."""
    rng = np.random.default_rng(seed)
    for c in classes:
        d = root / (split or "") / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (*size, 3) if mode == "RGB" else size
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).convert(mode).save(d / f"{c}{i:03d}.{ext}")
    return root


def load(path, **kw):
    return load_dataset(DataConfig(path=str(path), **kw))


def test_train_test_layout_classes_sorted_like_keras_and_torchvision(tmp_path):
    names = ("b", "B", "a", "10", "2")  # sorted() by code point: "10" < "2" < "B" < "a" < "b"
    make_folder(tmp_path, names, n=10, split="train")
    make_folder(tmp_path, names, n=4, split="test", seed=1)
    d = load(tmp_path, val_size=5)
    assert d.kind == "folder" and d.spec.labels == ("10", "2", "B", "a", "b")
    assert (len(d.train_images), len(d.val_images), len(d.test_images)) == (45, 5, 20)
    assert np.bincount(d.val_labels).tolist() == [1] * 5  # stratified: one of each class
    assert np.bincount(d.test_labels).tolist() == [4] * 5
    assert d.spec.image_shape == (6, 8, 3) and d.spec.preprocessing == "resize"
    assert set(d.files) == {"train/", "test/"}
    assert d.test_images[0].shape == (6, 8, 3) and d.test_images[:3].shape == (3, 6, 8, 3)
    # the label of each test image is its folder's
    test_paths = d.test_images.paths
    assert all(d.spec.labels[y] == p.split("/")[-2] for p, y in zip(test_paths, d.test_labels, strict=True))


def test_val_folder_is_used_and_default_val_is_ten_percent(tmp_path):
    make_folder(tmp_path, n=20, split="train")
    make_folder(tmp_path, n=3, split="test")
    assert len(load(tmp_path).val_images) == 4  # 10% of 40
    make_folder(tmp_path, n=2, split="val")
    d = load(tmp_path)
    assert (len(d.train_images), len(d.val_images), set(d.files)) == (40, 4, {"train/", "val/", "test/"})
    assert not any("--val-size" in n for n in d.notes + load(tmp_path, val_size=0).notes)  # 0: evaluation's own
    d = load(tmp_path, val_size=10)  # the folder's own split wins, and a note says the flag was not used
    assert len(d.val_images) == 4 and "--val-size 10 not used: val/ is the validation split (4 images)" in d.notes


def test_single_split_is_stratified_seeded_and_disjoint(tmp_path):
    make_folder(tmp_path, ("x", "y", "z"), n=20)
    a, b, c = load(tmp_path), load(tmp_path), load(tmp_path, seed=1)
    assert np.bincount(a.test_labels).tolist() == [4, 4, 4]  # test_fraction 0.2 of each class
    assert len(a.train_images) + len(a.val_images) == 48 and len(a.val_images) == 4
    assert a.test_images.paths == b.test_images.paths and a.test_images.paths != c.test_images.paths
    assert set(a.test_images.paths).isdisjoint(a.train_images.paths + a.val_images.paths)
    limited = load(tmp_path, test_limit=5, test_fraction=0.5)
    assert len(limited.test_images) == 5 and len(set(limited.test_labels.tolist())) > 1  # a shuffled prefix


def test_test_folder_alone_is_evaluation_data(tmp_path):
    make_folder(tmp_path, n=3, split="test")
    d = load(tmp_path)
    assert (len(d.train_images), len(d.val_images), len(d.test_images)) == (0, 0, 6)


def test_images_are_prepared_like_predict_prepares_a_file(tmp_path):
    make_folder(tmp_path, n=4, size=(9, 5))
    Image.new("RGB", (20, 30), (200, 10, 10)).save(tmp_path / "cat" / "odd.jpg")  # another size, another format
    d = load(tmp_path, image_size=(8, 8), resize="crop")
    for i, path in enumerate(d.test_images.paths + d.train_images.paths):
        split = d.test_images if i < len(d.test_images) else d.train_images
        k = i if i < len(d.test_images) else i - len(d.test_images)
        assert np.array_equal(split[k], preprocess_file(path, d.spec))
    assert any("2 size(s); 9 of 9 not 8x8 (the size asked for) are resized to it (resize: crop)" in n for n in d.notes)


def test_channels_detected_from_headers_and_forced(tmp_path):
    make_folder(tmp_path, ("a", "b"), n=5, mode="L")
    grey = load(tmp_path)
    assert grey.spec.channels == 1 and not grey.notes
    Image.new("P", (8, 6)).save(tmp_path / "a" / "palette_grey.png")  # a palette of greys is grey
    assert load(tmp_path).spec.channels == 1
    Image.fromarray(np.full((6, 8, 3), (0, 128, 255), np.uint8)).save(tmp_path / "b" / "colour.png")
    mixed = load(tmp_path)
    assert mixed.spec.channels == 3 and any("1 colour, 11 grayscale" in n for n in mixed.notes)
    forced = load(tmp_path, channels=1)
    assert forced.spec.channels == 1 and forced.test_images[:].shape[-1] == 1
    assert any("1 channel(s) asked for: 1 colour image(s) converted" in n for n in forced.notes)


def test_most_common_size_wins_and_the_rest_are_counted(tmp_path):
    make_folder(tmp_path, n=5, size=(6, 8))
    make_folder(tmp_path, ("cat",), n=2, size=(12, 12), seed=3)  # overwrites cat000, cat001 with 12x12
    d = load(tmp_path)
    assert d.spec.image_shape[:2] == (6, 8)
    assert any("2 of 10 not 6x8" in n for n in d.notes)


def test_ignored_files_are_counted(tmp_path):
    make_folder(tmp_path, n=5)
    (tmp_path / "cat" / "notes.txt").write_text("x")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"x")
    (tmp_path / ".ipynb_checkpoints").mkdir()  # a hidden folder is not a class
    (tmp_path / "README.md").write_text("x")
    d = load(tmp_path)
    assert d.spec.labels == ("cat", "dog")
    assert any(n.startswith("ignored 4 ") and "1 not images (.txt)" in n for n in d.notes), d.notes


def test_labels_file_gives_the_class_order(tmp_path):
    make_folder(tmp_path, ("cat", "dog"), n=5)
    order = tmp_path.parent / "labels.txt"
    order.write_text("dog\ncat\n")
    d = load(tmp_path, labels=str(order))
    assert d.spec.labels == ("dog", "cat")
    assert all(d.spec.labels[y] in p for p, y in zip(d.test_images.paths, d.test_labels, strict=True))
    order.write_text("dog\nfox\n")
    with pytest.raises(DataError, match="does not name the class folder"):
        load(tmp_path, labels=str(order))


def test_fingerprint_changes_with_any_file(tmp_path):
    make_folder(tmp_path, n=4)
    before = load(tmp_path).fingerprint()["files_sha256"]
    assert load(tmp_path).files == before
    victim = tmp_path / "dog" / "dog002.png"
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(victim)
    assert load(tmp_path).files != before
    victim.rename(tmp_path / "dog" / "renamed.png")
    changed = load(tmp_path).files
    assert changed != before and len(changed["./"]) == 64


def record_decodes(monkeypatch) -> list[list[int]]:
    """The indices of every ImageFiles.decode call from now on."""
    asked = []
    decode = folders.ImageFiles.decode
    monkeypatch.setattr(folders.ImageFiles, "decode", lambda self, idx: asked.append(list(idx)) or decode(self, idx))
    return asked


def test_lazy_split_indexes_like_an_array_and_decodes_only_what_is_asked(tmp_path, monkeypatch):
    make_folder(tmp_path, n=10, split="test")
    split = load(tmp_path).test_images
    assert isinstance(split, folders.ImageFiles) and split.shape == (20, 6, 8, 3) and len(split) == 20
    monkeypatch.setattr(folders.ImageFiles, "KEEP_BYTES", 0)  # as a split too large to keep
    asked = record_decodes(monkeypatch)
    one, batch, picked = split[-1], split[2:5], split[np.array([0, 7, 7])]
    assert one.shape == (6, 8, 3) and one.dtype == np.uint8 and batch.shape == (3, 6, 8, 3)
    assert np.array_equal(picked[1], picked[2]) and np.array_equal(split[[True] + [False] * 19][0], split[0])
    assert asked[:3] == [[19], [2, 3, 4], [0, 7, 7]]
    assert np.array_equal(split[2:5], batch) and asked[-1] == [2, 3, 4]  # kept nothing: decoded again
    asked.clear()
    full = np.asarray(split)  # materialises once (what training does), then serves every index from memory
    assert full.shape == (20, 6, 8, 3) and np.array_equal(full[2:5], batch) and len(asked) == 1
    assert np.array_equal(split[2:5], batch) and np.asarray(split, np.uint8) is full and len(asked) == 1
    assert np.array(split, copy=True) is not full and np.asarray(split, np.float32).dtype == np.float32
    with pytest.raises(IndexError):
        split[20]


def test_a_small_split_keeps_what_it_decoded(tmp_path, monkeypatch):
    make_folder(tmp_path, n=10, split="test")
    split = load(tmp_path).test_images
    asked = record_decodes(monkeypatch)
    first = split[0:8]
    assert np.array_equal(split[4:12][:4], first[4:]) and asked == [list(range(8)), list(range(8, 12))]
    assert np.array_equal(np.asarray(split)[:8], first) and asked[-1] == list(range(12, 20))


def test_evaluation_streams_the_test_split_in_batches(tmp_path, monkeypatch):
    """An evaluation of a folder decodes at most one batch of images at a time, never the whole split."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edgeport.pipeline import evaluate_files

    make_folder(tmp_path / "data", ("a", "b", "c"), n=100, size=(8, 8), split="test")
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], np.eye(3, dtype=np.float32).ravel())
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["m", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["p"])],
        "mean_colour", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 8, 3])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 3])], initializer=[w])
    model = tmp_path / "mean_colour.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(model))

    monkeypatch.setattr(folders.ImageFiles, "KEEP_BYTES", 0)  # as a folder too large to keep decoded
    monkeypatch.setattr(folders.ImageFiles, "__array__", lambda *a, **k: pytest.fail("the whole split was decoded"))
    asked = record_decodes(monkeypatch)
    report = evaluate_files([model, model], data=str(tmp_path / "data"))
    assert report["dataset"]["test_images"] == 300 and 0 <= report["artifacts"][0]["accuracy"] <= 1
    batches = [len(a) for a in asked if len(a) > 1]  # one-image reads are the shape check
    assert sum(batches) == 2 * 300 and max(batches) <= 256 < 300  # each file's pass, a batch at a time


# ---- bad input -----------------------------------------------------------------------------------------------


def test_no_dataset_here(tmp_path):
    (tmp_path / "empty_subfolder").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no dataset here"):
        load(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.png")
    with pytest.raises(DataError, match=r"no dataset here: .* \(its 1 images need class folders"):
        load(tmp_path)


@pytest.mark.parametrize("breakage, message", [
    ("empty_class", "dog: empty class folder"),
    ("single_class", "only one class (cat)"),
    ("unknown_test_class", "class 'fox' of test/ is not a class of train/"),
    ("train_without_test", "no test/ beside it; expected PATH/train/<class>/ and PATH/test/<class>/ (rename val/ to "
                           "test/"),
])
def test_bad_layouts_are_one_line_errors(tmp_path, breakage, message):
    make_folder(tmp_path, ("cat", "dog"), n=4, split="train")
    make_folder(tmp_path, ("cat", "dog"), n=2, split="test")
    if breakage == "empty_class":
        for f in (tmp_path / "train" / "dog").iterdir():
            f.unlink()
    elif breakage == "single_class":
        for split in ("train", "test"):
            for f in (tmp_path / split / "dog").iterdir():
                f.unlink()
            (tmp_path / split / "dog").rmdir()
    elif breakage == "unknown_test_class":
        make_folder(tmp_path, ("fox",), n=1, split="test")
    else:
        (tmp_path / "test").rename(tmp_path / "val")
    with pytest.raises(DataError, match=re.escape(message)) as err:
        load(tmp_path)
    assert "\n" not in str(err.value)


def test_unreadable_images_stop_the_load_unless_skipped(tmp_path):
    make_folder(tmp_path, n=6)
    good = (tmp_path / "cat" / "cat000.png").read_bytes()
    (tmp_path / "cat" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated: its CRCs do not add up
    (tmp_path / "dog" / "text.jpg").write_bytes(b"not an image")
    jpeg = tmp_path / "dog" / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[:-200])  # a partial download: no end-of-image marker, pixels missing
    with pytest.raises(DataError, match=r"cut\.png: cannot decode image .*\(3 unreadable images in all\).*"
                                        "--skip-bad-images"):
        load(tmp_path)
    d = load(tmp_path, skip_bad_images=True)
    assert len(d.train_images) + len(d.val_images) + len(d.test_images) == 12
    assert any(n.startswith("skipped 3 unreadable image(s)") for n in d.notes)


def test_images_over_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    make_folder(tmp_path, n=3)
    Image.new("RGB", (100, 100)).save(tmp_path / "cat" / "huge.png")
    monkeypatch.setattr(folders, "MAX_PIXELS", 5000)
    with pytest.raises(DataError, match=r"huge\.png: image is 100x100 = 10,000 pixels, over the limit of 5,000"):
        load(tmp_path)
