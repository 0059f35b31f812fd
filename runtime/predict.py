"""Classify image files with any exported model, reading labels and normalisation from the file itself.

    from edgeport.runtime.predict import predict_files
    result = predict_files("tflite_int8.tflite", ["examples/seven.png"])
    result.predictions[0].top   # [("7", 0.98), ("1", 0.01), ("2", 0.004)]

No TensorFlow and no side files: a model edgeport exported carries its labels and input normalisation
(runtime/metadata.py); any other model is assumed to be an MNIST-style digit classifier, and `notes` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.core.errors import ConfigError, InputError
from edgeport.runtime.metadata import has_edgeport_metadata, labels_of
from edgeport.runtime.preprocess import MAX_PIXELS, SIZE, preprocess_file


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one image, or the one-line reason it could not be classified."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (label, probability), most likely first
    index: int | None = None  # output position of the top-1 class
    error: str | None = None  # set instead of `top` when the image was refused

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"image": self.path, "error": self.error}
        return {"image": self.path, "label": self.label, "index": self.index,
                "top": [{"label": lab, "probability": p} for lab, p in self.top]}


@dataclass(frozen=True)
class PredictResult:
    model: str
    predictions: list[Prediction]
    notes: list[str]  # things the user should know: e.g. the model had no metadata and defaults were used
    preprocess: bool

    def to_dict(self) -> dict:
        return {"model": self.model, "preprocess": "mnist" if self.preprocess else "none", "notes": self.notes,
                "predictions": [p.to_dict() for p in self.predictions]}


def predict_files(model, images: list[str | Path], top: int = 3, preprocess: bool = True,
                  max_pixels: int = MAX_PIXELS) -> PredictResult:
    """Top-`top` classes for each image file. `model` is a path or a loaded `edgeport.runtime.Model`.

    A bad image (undecodable, blank, too large, wrong size with preprocess=False) gets an `error` and the
    others still run; a bad model raises (ModelFileError, or InputError when its input is not an image).
    """
    from edgeport.runtime import Model, load

    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    m = model if isinstance(model, Model) else load(model)
    h, w = m.image_shape  # raises InputError for a model whose input is not an image
    notes = []
    if not has_edgeport_metadata(m.metadata):
        notes.append(f"{m.path.name} carries no edgeport metadata: assuming MNIST defaults "
                     "(labels 0-9, pixels / 255, no further normalisation)")
    elif m.metadata.get("preprocessing", "mnist") != "mnist" and preprocess:
        notes.append(f"{m.path.name} asks for preprocessing {m.metadata['preprocessing']!r}; only 'mnist' "
                     "is implemented, so that is what was applied")
    if h <= 0 or w <= 0:
        notes.append(f"{m.path.name} accepts any image size; using {SIZE}x{SIZE}")
        h = w = SIZE
    labels = labels_of(m.metadata, m.num_classes)
    if "labels" in m.metadata and labels != _listed(m.metadata["labels"]):  # labels_of fell back to indices
        notes.append(f"{m.path.name}: its labels do not fit its {m.num_classes} outputs; showing class indices")
    k = min(top, m.num_classes)
    results = []
    for path in images:
        try:
            x = preprocess_file(path, (h, w), preprocess=preprocess, max_pixels=max_pixels)
        except InputError as exc:
            results.append(Prediction(str(path), error=str(exc)))
            continue
        probs = m.predict(x[None])[0]
        order = np.argsort(-probs, kind="stable")[:k]
        results.append(Prediction(str(path), [(labels[i], float(probs[i])) for i in order], int(order[0])))
    return PredictResult(str(m.path), results, notes, preprocess)


def _listed(value: str):
    import json

    try:
        return [str(x) for x in json.loads(value)]
    except (ValueError, TypeError):
        return None
