"""Import TensorFlow the one way tfmot accepts: Keras 2 (tf-keras), quiet logs, and a clear error if absent."""

from __future__ import annotations

import contextlib
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tfmot rejects Keras 3 models; must precede the TF import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgeport.core.errors import MissingDependencyError, ModelFileError  # noqa: E402


def import_tf():
    """Return (tensorflow, tf_keras), or raise naming the extra to install."""
    try:
        with _quiet_native_stderr():
            import tensorflow as tf
            import tf_keras as keras

            tf.config.list_physical_devices()  # probes CUDA now, while its "no GPU" noise is muted
    except ImportError as exc:
        raise MissingDependencyError(
            f"training and export need TensorFlow: pip install 'edgeport[train]' ({exc})"
        ) from None
    tf.get_logger().setLevel("ERROR")
    return tf, keras


@contextlib.contextmanager
def quiet_conversion():
    """Keep converter output that is not for the user off the terminal while one file converts: Keras 3's
    `model.export` (which the TFLite converter calls for a Keras 3 model) prints its serving signature with every
    captured variable to stdout, hundreds of lines; the TFLite converter warns (UserWarning) about input
    statistics it does not need and its calibrator prints its settings on file descriptor 2. A conversion that
    fails still raises its error, which export reports in one line. EDGEPORT_VERBOSE=1 shows everything."""
    import io
    import warnings

    if os.environ.get("EDGEPORT_VERBOSE"):
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _quiet_native_stderr(always=True):
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@contextlib.contextmanager
def _quiet_native_stderr(always: bool = False):
    """Mute file descriptor 2 while TensorFlow loads: its C++ logging (oneDNN, cuInit on CPU-only machines)
    starts before TF_CPP_MIN_LOG_LEVEL is read. Python exceptions are unaffected. EDGEPORT_VERBOSE=1 keeps it.
    `always`: mute it even once TensorFlow is loaded (a conversion's native chatter)."""
    if os.environ.get("EDGEPORT_VERBOSE") or ("tensorflow" in sys.modules and not always):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


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
