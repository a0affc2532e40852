"""Ranks read from a weight's spectrum: kept energy, EVBMF (Nakajima et al. 2013) and MUSCO's weakened EVBMF.

Shared by the methods whose rank is a matrix rank of an unfolding (SVD of a Linear, Tucker-2's two channel
modes). EVBMF rank 0 means that no component stands above the noise: the layer is not factorized, and the
reason says so (it is never silently raised to rank 1).
"""

from __future__ import annotations

from typing import Any

import torch

from ..decompose import ranks, singular_values
from ..errors import DecompositionError

NO_SIGNAL = "EVBMF finds no component above noise"


def spectral_rank(layer: str, matrix: torch.Tensor, kind: str, value: Any, options: dict[str, Any]) -> int:
    """The rank of ``matrix`` that ``kind: value`` asks for (``energy`` fraction, or ``vbmf`` true/"weakened")."""
    if kind == "energy":
        return ranks.energy_rank(singular_values(matrix), value)
    if kind != "vbmf":
        raise DecompositionError(layer, f"unknown rank spec {kind!r}")
    r = ranks.evbmf(matrix)[0]
    if r == 0:
        raise DecompositionError(layer, NO_SIGNAL)
    if value == "weakened":
        return ranks.weakened_evbmf(min(matrix.shape), r, k=options.get("k", 0.8),
                                    min_rank=options.get("min_rank", 21))
    return r
