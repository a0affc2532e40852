"""User-facing errors.

Every problem caused by the user's input (a missing file, a corrupt weight file, a layer that cannot take a
method, an unknown model name) is raised as a :class:`TensorSlimError` whose message is one line naming the
file, layer or value at fault. The CLI prints that line and exits with status 2, without a traceback.
"""

from __future__ import annotations


class TensorSlimError(Exception):
    """A problem with the user's input; ``str(err)`` is a one-line explanation."""


class DataError(TensorSlimError):
    """A dataset is missing, mis-laid or corrupt."""


class ModelError(TensorSlimError):
    """A model cannot be built, loaded or run as asked (unknown name, bad weights, wrong input shape)."""


class DecompositionError(TensorSlimError):
    """A layer cannot take the requested method or rank."""

    def __init__(self, layer: str, reason: str):
        self.layer = layer
        self.reason = reason
        super().__init__(f"layer {layer!r}: {reason}")
