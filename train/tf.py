"""Import TensorFlow the one way tfmot accepts: Keras 2 (tf-keras), quiet logs, and a clear error if absent."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tfmot rejects Keras 3 models; must precede the TF import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgeport.errors import MissingDependencyError, ModelFileError  # noqa: E402


def import_tf():
    """Return (tensorflow, tf_keras), or raise naming the extra to install."""
    try:
        import tensorflow as tf
        import tf_keras as keras
    except ImportError as exc:
        raise MissingDependencyError(
            f"training and export need TensorFlow: pip install 'edgeport[train]' ({exc})"
        ) from None
    tf.get_logger().setLevel("ERROR")
    return tf, keras


def load_keras_model(path) -> object:
    """Load a `.keras` model in safe mode (no arbitrary code), with a one-line error if it is not one."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: Keras model file not found")
    if p.suffix != ".keras":
        raise ModelFileError(f"{p}: expected a .keras model file")
    _, keras = import_tf()
    try:
        return keras.models.load_model(p, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types for a bad zip; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{p}: not a loadable Keras model ({first[:200]})") from None
