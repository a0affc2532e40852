"""Factorized layers built only from standard ops (``nn.Conv2d``, ``nn.Linear``, ``matmul``, reshape / permute).

Every layer exports to ONNX as plain Conv / MatMul / Gemm, is seen by any FLOP counter, and never rebuilds the
dense weight in ``forward``. Each provides

* a constructor from sizes + rank (random init) and a ``from_*`` converter from a trained layer (which sets the
  ``rel_error`` attribute of the decomposition; ``None`` for random init);
* ``params()`` (the number of parameters) and ``macs(input_shape)`` (multiply-accumulates for one sample of
  shape ``(C, H, W)`` or ``(features,)``; exactly the products ``forward`` runs, bias additions excluded);
* ``config()``, a JSON-able dict with ``LAYERS[type(layer).__name__](**layer.config())`` rebuilding the same
  structure (same parameter names and shapes).

Bad input (grouped convolutions, CP/Tucker of 1×1 kernels, rank 0 or above full rank, TT shapes that do not
multiply to the layer size, NaN/inf weights) raises :class:`tensorslim.errors.DecompositionError` naming the layer
(``name=`` keyword of the constructors and converters).
"""

from __future__ import annotations

from torch import nn

from .cp import CPConv2d
from .svd import SVDLinear
from .tcl import TCL, TRL, TCLHead
from .tt import TTConv2d, TTLinear, tt_full_ranks
from .tt_shapes import TTDesignPoint, enumerate_tt_shapes, tt_design_points
from .tucker import TUCKER1_MAX_IN_CHANNELS, Tucker2Conv2d

#: Layer class by name, for rebuilding a layer from ``config()``.
LAYERS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (SVDLinear, CPConv2d, Tucker2Conv2d, TTLinear, TTConv2d, TCL, TRL, TCLHead)
}

__all__ = [
    "LAYERS",
    "CPConv2d",
    "SVDLinear",
    "TCL",
    "TCLHead",
    "TRL",
    "TTConv2d",
    "TTDesignPoint",
    "TTLinear",
    "TUCKER1_MAX_IN_CHANNELS",
    "Tucker2Conv2d",
    "enumerate_tt_shapes",
    "tt_design_points",
    "tt_full_ranks",
]
