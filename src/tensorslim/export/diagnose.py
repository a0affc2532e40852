"""Why an export fails, in one line that names the module: the failing forward pass or the untranslatable op.

:func:`probe` runs the model once with forward hooks on every module; a forward that raises is reported with
the innermost module that was running. :func:`blame` turns an exporter's exception (often a long chain, with
guidance text and colours) into its innermost meaningful line and, when it names an aten operator, the first
module whose forward calls that operator (found by re-running the model under a dispatch mode).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ._common import ExportError, one_line, strip_ansi
from .verify import flatten_outputs


def _norm_op(name: str) -> str:
    """``aten::_linalg_svd.default`` / ``aten._linalg_svd`` -> ``linalg_svd``."""
    name = name.split("::")[-1]
    if name.startswith("aten."):
        name = name[len("aten."):]
    name = name.split(".")[0]
    return name.lstrip("_")


@contextlib.contextmanager
def _module_stack(model: nn.Module) -> Iterator[list[tuple[str, nn.Module]]]:
    """Keep a stack of the modules whose forward is running (innermost last) while the block runs."""
    stack: list[tuple[str, nn.Module]] = []
    handles = []

    def pre(name: str):
        def hook(mod: nn.Module, args: Any) -> None:
            stack.append((name, mod))
        return hook

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        if stack and stack[-1][1] is mod:
            stack.pop()

    for name, mod in model.named_modules():
        handles.append(mod.register_forward_pre_hook(pre(name)))
        handles.append(mod.register_forward_hook(post))
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def _describe(name: str, mod: nn.Module) -> str:
    kind = type(mod).__name__
    return f"module {name!r} ({kind})" if name else f"the top-level module ({kind})"


def probe(model: nn.Module, example: torch.Tensor) -> int:
    """Run ``model(example)`` and return its number of outputs; a failing forward raises ExportError naming
    the innermost module that was running."""
    with _module_stack(model) as stack:
        try:
            with torch.no_grad():
                out = model(example)
        except Exception as err:  # noqa: BLE001 - any failure of the user's forward is reported in one line
            where = _describe(*stack[-1]) if stack else _describe("", model)
            raise ExportError(f"the model's forward fails in {where} on input of shape "
                              f"{tuple(example.shape)}: {one_line(err)}") from None
    return len(flatten_outputs(out, "forward"))


def _op_sites(model: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """Per aten op (normalised name), the first module (described) whose forward calls it.

    Only run after an exporter failed: the dispatch mode imports ``torch._dynamo``, which is slow (once per
    process).
    Returns an empty dict when the op cannot be attributed.
    """
    sites: dict[str, str] = {}
    try:
        from torch.utils._python_dispatch import TorchDispatchMode  # private but long-stable API
    except ImportError:  # pragma: no cover - naming the module is a nicety
        return sites
    with _module_stack(model) as stack:

        class _Recorder(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
                key = _norm_op(str(getattr(func, "__name__", func)))
                if key not in sites and stack:
                    sites[key] = _describe(*stack[-1])
                return func(*args, **(kwargs or {}))

        with contextlib.suppress(Exception), torch.no_grad(), _Recorder():
            model(example)
    return sites


def blame(err: BaseException, model: nn.Module, example: torch.Tensor) -> str:
    """A one-line reason for an exporter failure, naming the aten op and the module that calls it if known."""
    chain = _exception_chain(err)
    text = " ".join(strip_ansi(str(e)) for e in chain)
    # The innermost exception usually says what is wrong; the dynamo exporter wraps it in long guidance text.
    reason = ""
    for e in reversed(chain):
        line = one_line(e)
        if line and not line.startswith("Failed to "):
            reason = line
            break
    reason = reason or one_line(err) or type(err).__name__
    ops = [_norm_op(m.group(1)) for m in re.finditer(r"aten(?:::|\.)(\w+)", text)]
    if ops:
        sites = _op_sites(model, example)
        for key in ops:
            if key in sites:
                return f"{sites[key]} uses aten::{key}: {reason}"
    return reason


def _exception_chain(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        chain.append(cur)
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return chain
