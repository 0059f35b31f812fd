"""Image-folder datasets: `PATH/train/<class>/*.png|jpg|...` + `PATH/test/<class>/...` (optional `val/`), or one
`PATH/<class>/...` split with a seeded, stratified test share: the layout of Keras' image_dataset_from_directory
and torchvision's ImageFolder. Class names come from the folder names."""

from __future__ import annotations

from pathlib import Path

from edgeport.core.errors import DataError


def load_image_folder(path: Path, cfg):
    """The Dataset of an image folder (not written yet: being built)."""
    raise DataError(f"{path}: no dataset here (no IDX files; image-folder datasets are not supported yet)")
