"""Classify image files with any exported model, reading labels and normalisation from the file itself.

    from edgeport.runtime.predict import predict_files
    result = predict_files("tflite_int8.tflite", ["examples/seven.png"])
    result.predictions[0].top   # [("7", 0.98), ("1", 0.01), ("2", 0.004)]

No TensorFlow and no side files: a model edgeport exported carries its input spec (labels, size, channels,
scaling, preprocessing; edgeport.core.spec); for any other model the spec comes from its input tensor, and
`notes` says which defaults were assumed. Each image goes through the spec's preprocessing recipe
(edgeport.core.images: `mnist`, `resize` or `none`) and then the model's own scaling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.core.errors import ConfigError, InputError
from edgeport.core.images import MAX_PIXELS, preprocess_file


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
    preprocess: str  # the recipe applied: "mnist" | "resize" | "none"

    def to_dict(self) -> dict:
        return {"model": self.model, "preprocess": self.preprocess, "notes": self.notes,
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
    spec = m.spec  # raises InputError for a model whose input is not an image
    labels = spec.labels
    k = min(top, m.num_classes)
    results = []
    for path in images:
        try:
            x = preprocess_file(path, spec, preprocess=preprocess, max_pixels=max_pixels)
        except InputError as exc:
            results.append(Prediction(str(path), error=str(exc)))
            continue
        probs = m.predict(x[None])[0]
        order = np.argsort(-probs, kind="stable")[:k]
        results.append(Prediction(str(path), [(labels[i], float(probs[i])) for i in order], int(order[0])))
    return PredictResult(str(m.path), results, m.spec_notes, spec.preprocessing if preprocess else "none")

