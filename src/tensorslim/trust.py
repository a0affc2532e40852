"""Which model builders may run: nothing named in a file runs code unless the user opts in.

A model directory (``model.json``), a plan or a study names the builder of its model. Read from a file, that
name may only be

* a built-in model (``convnet``, ``resnet20``, … — a lookup in a fixed table, no import),
* one of tensorslim's own builders (:data:`INTERNAL_BUILDERS`, e.g. the NAS network of ``tensorslim search``),
* a torchvision model, ``torchvision.models:NAME`` with ``NAME`` in ``torchvision.models.list_models()``, where
  torchvision is installed.

Anything else (``module:function``, ``file.py:function``, ``builtins:eval``, a dotted attribute path …) would
import and call arbitrary code, and is refused with a one-line :class:`UntrustedCodeError` naming the builder,
the file and the opt-in, unless the user trusts the code: ``--trust-code`` on the command line,
``trust_code=True`` in Python (``tensorslim.load(DIR, trust_code=True)``), or the :func:`trusted_code` context
around any other call (the convention of Hugging Face's ``trust_remote_code``).

A factory that the user types on the command line or passes to a Python function themself
(``tensorslim inspect examples.vgg16_imagenet:vgg16``) is their own choice and is not checked here; a model
saved from it records ``"trust_code": true`` in its ``model.json``.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

from .errors import ModelError

#: tensorslim's own factories that saved models name (importing them runs only tensorslim's code).
INTERNAL_BUILDERS = frozenset({"tensorslim.search.space:build_network"})

TORCHVISION_PREFIX = "torchvision.models:"

# One process-wide setting (not a context variable: worker threads must see what the command line said).
_state = {"trusted": False}
_lock = threading.Lock()


class UntrustedCodeError(ModelError):
    """A builder read from a file that would run code the user has not trusted."""


def is_trusted() -> bool:
    """True inside :func:`trusted_code` (or after the CLI's ``--trust-code``)."""
    return _state["trusted"]


@contextlib.contextmanager
def trusted_code(enabled: bool = True) -> Iterator[None]:
    """Within the block, builders read from files may import and run user code (``enabled=False``: may not).
    The setting is process-wide while the block runs."""
    with _lock:
        before, _state["trusted"] = _state["trusted"], bool(enabled)
    try:
        yield
    finally:
        with _lock:
            _state["trusted"] = before


def set_trusted(enabled: bool) -> None:
    """Set the trust for the rest of the process (the CLI calls it once for ``--trust-code``)."""
    with _lock:
        _state["trusted"] = bool(enabled)


def needs_trust(builder: Any) -> bool:
    """True when building ``builder`` would import code that is neither built in nor tensorslim's own."""
    return not _is_safe(builder)


def check_builder(builder: Any, source: Any, trust_code: bool | None = None) -> None:
    """Refuse ``builder`` (read from the file ``source``) unless it is safe or code is trusted.

    ``trust_code`` None means the ambient setting (:func:`is_trusted`)."""
    trusted = is_trusted() if trust_code is None else trust_code
    if trusted or _is_safe(builder):
        return
    raise UntrustedCodeError(
        f"{source}: builder {builder!r} is not a built-in model and would run code from outside tensorslim; "
        "refused (pass --trust-code on the command line, or trust_code=True in Python, if you trust this file)")


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _is_safe(builder: Any) -> bool:
    from .models import names

    if not isinstance(builder, str):
        return False
    if builder in names() or builder in INTERNAL_BUILDERS:
        return True
    if builder.startswith(TORCHVISION_PREFIX):
        name = builder[len(TORCHVISION_PREFIX):]
        return bool(_NAME.match(name)) and name in _torchvision_models()
    return False


def _torchvision_models() -> frozenset[str]:
    try:
        import torchvision.models as tvm
    except Exception:  # noqa: BLE001 - absent or broken: no torchvision model is available
        return frozenset()
    try:
        return frozenset(tvm.list_models())
    except Exception:  # noqa: BLE001
        return frozenset()
