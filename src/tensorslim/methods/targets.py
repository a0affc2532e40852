"""Deployment targets: the runtime a compressed model is exported for, and the channel multiple it prefers.

A target names a runtime on a CPU family. Its ``multiple`` is the channel count that the runtime's fastest
convolution / GEMM kernels work in; ranks that become channel counts (CP rank, Tucker-2 ``r_in`` / ``r_out``,
SVD rank) are rounded to it at compression time (:func:`round_rank`), and the exporter's ``pad_channels`` pass
pads what is still off to ``pad_block`` (0: no padding pass for this target).

==============  ========  =========  ================================================================================
target          multiple  pad_block  why
==============  ========  =========  ================================================================================
``ort-x86``     16        16         ONNX Runtime's NCHWc convolutions (MLAS) block channels by 8 with AVX2 and by
                                     16 with AVX-512. 16 is a multiple of both, so a file rounded and padded for it
                                     runs in the blocked layout on either CPU (portable files; the cost is that a
                                     rank on an AVX2-only CPU is sometimes rounded further than it needs to be).
``ort-arm``     16        0          MLAS's ARM64 SGEMM packs the weight in 16-column panels and its NEON NCHWc
                                     kernels (built with ``MLAS_USE_ARM_NEON_NCHWC``) use a block of 16; without
                                     the NCHWc build there is no blocked layout, so nothing is padded.
``xnnpack-x86`` 16        0          XNNPACK's f32 GEMM/IGEMM micro-kernels on x86 (AVX, FMA3, AVX-512) compute 16
                                     output channels per tile (``nr = 16``); XNNPACK pads the packed weights itself.
``xnnpack-arm`` 8         0          XNNPACK's f32 GEMM/IGEMM micro-kernels on ARM64 NEON use ``nr = 8``.
``none``        1         0          no rounding, no padding: ranks exactly as the rank rule chose them.
==============  ========  =========  ================================================================================

The default (:func:`default_target`) is ``ort-x86`` on x86 machines, ``ort-arm`` on ARM64, ``none`` elsewhere.

Rounding (:func:`round_rank`) takes each rounded entry of a rank to the nearest multiple, and if that candidate
is not allowed, to the next nearest, and so on: never to 0, never above the method's upper bound for that entry,
never to a rank whose layer has more parameters or MACs than the dense one (the ``not_smaller`` rule of
:mod:`tensorslim.plan`), and for a ``ratio`` / ``macs_ratio`` rule never over the rule's budget. When no multiple
is allowed (a layer narrower than the multiple, or a budget below the first multiple) the rank stays as the rule
chose it. Explicit ranks (``rank:``) are the user's own and are never rounded. TT, Tensor Ring and TCL ranks are
bonds of contractions (reshapes and MatMuls), not convolution channels, and are not rounded either.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import platform
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import TensorSlimError


@dataclasses.dataclass(frozen=True)
class Target:
    """A runtime on a CPU family: the channel ``multiple`` its kernels prefer, the block the exporter pads to."""

    name: str
    runtime: str  # "ort", "xnnpack" or "none"
    multiple: int
    pad_block: int  # the pad_channels block for an exported file; 0: no padding pass
    description: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("ort-x86", "ort", 16, 16, "ONNX Runtime on x86: NCHWc block 8 (AVX2) or 16 (AVX-512); 16 fits both"),
    Target("ort-arm", "ort", 16, 0, "ONNX Runtime on ARM64: MLAS SGEMM panels and NEON NCHWc block of 16"),
    Target("xnnpack-x86", "xnnpack", 16, 0, "XNNPACK on x86: f32 GEMM tiles of 16 output channels"),
    Target("xnnpack-arm", "xnnpack", 8, 0, "XNNPACK on ARM64 NEON: f32 GEMM tiles of 8 output channels"),
    Target("none", "none", 1, 0, "no rounding, no padding"),
)}


def names() -> tuple[str, ...]:
    return tuple(TARGETS)


def default_target() -> str:
    """``ort-x86`` on x86 machines, ``ort-arm`` on ARM64, ``none`` elsewhere."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "ort-x86"
    if machine in ("aarch64", "arm64"):
        return "ort-arm"
    return "none"


def get(name: str | Target | None) -> Target:
    """The target called ``name`` (None: :func:`default_target`); a one-line error listing the known ones."""
    if isinstance(name, Target):
        return name
    if name is None:
        name = default_target()
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise TensorSlimError(f"unknown target {name!r}; targets: {', '.join(TARGETS)}") from None


def _candidates(value: int, upper: int, multiple: int) -> list[int]:
    """Multiples of ``multiple`` in ``[multiple, upper]``, nearest to ``value`` first (ties: the smaller)."""
    top = upper // multiple
    if top < 1:
        return []
    k = min(max(1, value // multiple), top)
    near = {k, min(k + 1, top), max(k - 1, 1)}
    rest = set(range(1, top + 1)) - near
    order = sorted(near, key=lambda j: (abs(j * multiple - value), j)) + sorted(
        rest, key=lambda j: (abs(j * multiple - value), j))
    return [j * multiple for j in order]


def round_rank(rank: Any, entries: Sequence[tuple[int | None, int]], multiple: int,
               allowed: Callable[[Any], bool], rebuild: Callable[[list[int]], Any]) -> Any:
    """``rank`` with its channel entries rounded to ``multiple`` (see the module docstring).

    ``entries``: ``(value, upper)`` for each entry of the rank that is a channel count (``value`` None:
    not rounded, e.g. Tucker-1's ``r_in``); ``rebuild(values)`` makes the rank from the rounded values (one per
    entry, in order); ``allowed(rank)`` says whether a candidate passes the bound / size / budget checks. The
    candidates are tried nearest first (by the summed log distance over the entries); the first allowed one
    wins, else ``rank`` is returned unchanged.
    """
    if multiple <= 1 or not entries:
        return rank
    options: list[list[int]] = []
    for value, upper in entries:
        if value is None or value % multiple == 0:
            options.append([value])  # type: ignore[list-item]
            continue
        near = _candidates(value, upper, multiple)[:4]
        if not near:
            options.append([value])
            continue
        options.append(near)
    originals = [value for value, _ in entries]

    def distance(combo: tuple[int, ...]) -> tuple[float, tuple[int, ...]]:
        return (sum(abs(math.log(c / v)) for c, v in zip(combo, originals) if v), combo)

    combos = sorted(itertools.product(*options), key=distance)
    for combo in combos:
        if list(combo) == originals:
            continue
        candidate = rebuild(list(combo))
        if allowed(candidate):
            return candidate
    return rank
