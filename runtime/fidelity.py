"""Cross-format fidelity: do all the exported files (and the reference) give the same answers?

Per-file accuracy, per-class accuracy, confusion matrix and agreement with the reference come from
`Model.evaluate` (base.py). This module adds what needs every file at once: a pairwise top-1 agreement
matrix and the test images on which any two of them disagree, kept by index. numpy only.
"""

from __future__ import annotations

import numpy as np

MAX_INDICES = 2000  # disagreeing images listed in report.json; the count is always exact


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts; rows are true labels, columns predictions."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return m


def compare(predictions: dict[str, np.ndarray], labels: np.ndarray, max_indices: int = MAX_INDICES) -> dict:
    """Pairwise agreement and disagreements across named top-1 prediction vectors of equal length.

    Returns {"names", "pairwise_agreement" (matrix, row/column order = names), "disagreements": {"count",
    "indices", "truncated", "labels", "predictions": {name: [...]}, "all_wrong"}}. `all_wrong` counts the
    disagreeing images where no model is right, which points at the image rather than the export.
    """
    names = list(predictions)
    if not names:
        return {"names": [], "pairwise_agreement": [], "disagreements": {"count": 0, "indices": [],
                                                                          "truncated": False}}
    p = np.stack([np.asarray(predictions[n], np.int64).reshape(-1) for n in names])
    labels = np.asarray(labels, np.int64).reshape(-1)
    if p.shape[1] != len(labels):
        raise ValueError(f"predictions cover {p.shape[1]} images but there are {len(labels)} labels")
    pairwise = [[float((p[a] == p[b]).mean()) if len(labels) else float("nan") for b in range(len(names))]
                for a in range(len(names))]
    idx = np.flatnonzero((p != p[0]).any(axis=0))
    shown = idx[:max_indices]
    return {
        "names": names,
        "pairwise_agreement": pairwise,
        "disagreements": {
            "count": int(len(idx)),
            "indices": shown.tolist(),
            "truncated": bool(len(idx) > max_indices),
            "labels": labels[shown].tolist(),
            "predictions": {n: p[k, shown].tolist() for k, n in enumerate(names)},
            "all_wrong": int((p[:, idx] != labels[idx]).all(axis=0).sum()),
        },
    }
