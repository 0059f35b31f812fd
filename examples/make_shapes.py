"""Write a small RGB image-folder dataset of coloured shapes: a stand-in for "your own images" that needs no download.

    python examples/make_shapes.py OUT [--per-class 500] [--test-per-class 100] [--size 32] [--seed 0]

OUT/train/<class>/*.png and OUT/test/<class>/*.png, the layout of Keras' image_dataset_from_directory and
torchvision's ImageFolder. Four classes, one shape each: circle, square, triangle, cross. Every image has a random
background colour with noise, and one shape of random colour (always far from the background), size, position and,
for triangles and crosses, rotation, so a model must learn the outline, not a colour or a place.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "cross", "square", "triangle")  # sorted: the order folder datasets give them


def shape_image(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One size x size RGB image with one shape of `kind` on a noisy background."""
    background = rng.integers(0, 256, 3)
    while True:  # a shape colour far enough from the background to see
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - background).sum() > 200:
            break
    noise = rng.normal(0, 12, (size, size, 3))
    pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.22, 0.38) * size  # half the shape's extent
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    fill = tuple(int(c) for c in colour)
    angle = rng.uniform(0, 2 * math.pi)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "square":
        draw.rectangle([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85], fill=fill)
    elif kind == "triangle":
        pts = [(cx + r * math.cos(angle + k * 2 * math.pi / 3), cy + r * math.sin(angle + k * 2 * math.pi / 3))
               for k in range(3)]
        draw.polygon(pts, fill=fill)
    elif kind == "cross":
        w = max(1.0, r * 0.35)
        for a in (angle, angle + math.pi / 2):
            dx, dy = r * math.cos(a), r * math.sin(a)
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=fill, width=int(round(w)))
    else:
        raise ValueError(f"unknown shape {kind!r}; expected one of {', '.join(CLASSES)}")
    return img


def write_shapes(out: str | Path, per_class: int = 500, test_per_class: int = 100, size: int = 32,
                 seed: int = 0) -> Path:
    """Write the dataset under `out` (train/ and test/, one folder per class); return `out`."""
    root = Path(out)
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for kind in CLASSES:
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape_image(kind, size, rng).save(folder / f"{kind}_{i:05d}.png")
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--per-class", type=int, default=500, help="training images per class (default 500)")
    p.add_argument("--test-per-class", type=int, default=100, help="test images per class (default 100)")
    p.add_argument("--size", type=int, default=32, help="image height and width in pixels (default 32)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    root = write_shapes(a.out, a.per_class, a.test_per_class, a.size, a.seed)
    print(f"{root}: {len(CLASSES)} classes, {a.per_class} train + {a.test_per_class} test images each, "
          f"{a.size}x{a.size} RGB")


if __name__ == "__main__":
    main()
