"""Typed, user-facing errors. The CLI catches `EdgeportError` once and prints its message as one line.

Messages name the file or value at fault and what was expected, so they read well on their own.
"""


class EdgeportError(Exception):
    """Base of every error a user can cause and fix."""


class DataError(EdgeportError):
    """A dataset directory or file is missing, corrupt or of the wrong layout."""


class ModelFileError(EdgeportError):
    """A model file is missing, truncated, not a model, or of an unknown format."""


class InputError(EdgeportError):
    """Images or arrays given to a model have the wrong shape, dtype or range."""


class ConfigError(EdgeportError):
    """An option, recipe entry or name is unknown or out of range."""


class ExportError(EdgeportError):
    """A conversion failed, or its output did not pass validation against the source model."""


class BudgetError(ExportError):
    """No set of layers kept in float brings an int8 file within its accuracy budget (`--max-drop`): the user's
    value cannot be met. The target is recorded as failed and the others go on; the command exits 2 at the end."""


class OutputError(EdgeportError):
    """An output folder or file cannot be written."""


class MissingDependencyError(EdgeportError):
    """An optional package is needed for this feature; the message names the pip extra."""


def require(module: str, extra: str):
    """Import an optional module or raise a one-line error naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed; install it with: pip install 'edgeport[{extra}]' ({exc})"
        ) from None
