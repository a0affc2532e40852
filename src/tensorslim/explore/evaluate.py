"""Judging a design point of the exploration: its analytic costs, its low-fidelity accuracy (the model with the
point applied, optionally after a few fine-tuning batches), with the decompositions cached per layer."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from typing import Any

from torch import nn

from ..cost import profile
from ..errors import TensorSlimError
from ..modeldir import COMPRESSION_ATTR
from ..train import TrainConfig, evaluate, train
from .latency import LatencyCache
from .pruning import drop_points
from .space import (
    LayerSpace,
    convert,
    single_thread,
)


class _Evaluator:
    """Builds candidate models from per-layer choices and measures them."""

    def __init__(self, model: nn.Module, spaces: list[LayerSpace], input_shape: tuple[int, ...],
                 target: str | None = None):
        self.model = model.eval()
        self.target = target  # recorded in each built model's plan, for export
        self.spaces = {s.name: s for s in spaces}
        self.input_shape = input_shape
        prof = profile(model, input_shape)
        self.base = {"params": prof.total.params, "macs": prof.total.macs,
                     "memory": prof.total.weight_bytes + prof.total.output_bytes}
        self._layers: dict[tuple[str, str], nn.Module] = {}
        self.latency: dict[tuple[str, str], float] | None = None  # (layer, key or "dense") -> ms, when measured

    def measure_latency(self, cache, spaces: list[LayerSpace], spec: Any) -> dict[str, int]:
        """Measure every live layer and survivor (cached per machine); drop survivors not faster than dense.

        Returns the number of points removed per layer (pruning stage "slower").
        """
        assert isinstance(cache, LatencyCache)
        self.latency = {}
        self.base["latency"] = cache.latency_ms(self.model, self.input_shape,
                                                key=f"model|{json.dumps(spec, sort_keys=True)}")
        removed = {}
        for s in spaces:
            if not s.survivors:
                continue
            dense = cache.latency_ms(s.ctx.module, s.ctx.input_shape)
            self.latency[(s.name, "dense")] = dense
            keep = []
            for p in s.survivors:
                ms = cache.latency_ms(self.layer(s.name, p.key), s.ctx.input_shape)
                self.latency[(s.name, p.key)] = ms
                if ms < dense:
                    keep.append(p)
            drop_points(s, "slower", keep)
            removed[s.name] = s.removed["slower"]
        cache.save()
        return removed

    def latency_of(self, choice: dict[str, str]) -> float:
        total = self.base["latency"]
        for name, key in choice.items():
            if key != "dense":
                total += self.latency[(name, key)] - self.latency[(name, "dense")]
        return total

    def point(self, layer: str, key: str):
        return next(p for p in self.spaces[layer].survivors if p.key == key)

    def costs(self, model: nn.Module, choice: dict[str, str] | None = None) -> dict[str, Any]:
        """Params, MACs and memory of a built model, measured by :func:`tensorslim.cost.profile` (and the
        latency estimate of ``choice`` when latencies were measured)."""
        prof = profile(model, self.input_shape)
        out: dict[str, Any] = {"params": prof.total.params, "macs": prof.total.macs,
                               "memory": prof.total.weight_bytes + prof.total.output_bytes}
        if self.latency is not None and choice is not None:
            out["latency"] = self.latency_of(choice)
        return out

    def estimate(self, choice: dict[str, str]) -> dict[str, int]:
        """The same from the per-layer design points, without building anything.

        Params and MACs are exact; memory is exact too except where a factorized layer returns a
        non-contiguous tensor (TT conv) that a later view (flatten) has to copy: :meth:`costs` counts that copy.
        """
        out = {k: self.base[k] for k in ("params", "macs", "memory")}
        for layer, key in choice.items():
            if key == "dense":
                continue
            space, p = self.spaces[layer], self.point(layer, key)
            dense = space.dense_cost()
            for k in ("params", "macs", "memory"):
                out[k] += getattr(p, k) - dense[k]
        return out

    def layer(self, layer: str, key: str) -> nn.Module:
        if (layer, key) not in self._layers:
            with single_thread():
                self._layers[(layer, key)] = convert(self.spaces[layer].ctx, self.point(layer, key)).eval()
        return self._layers[(layer, key)]

    def build(self, choice: dict[str, str]) -> nn.Module:
        """A fresh model with the chosen layers swapped in, carrying the compression record for saving."""
        new = copy.deepcopy(self.model)
        rules, entries = [], []
        for name, key in choice.items():
            if key == "dense":
                continue
            p, ctx = self.point(name, key), self.spaces[name].ctx
            layer = copy.deepcopy(self.layer(name, key))
            new.set_submodule(name, layer)
            rules.append(p.rule())
            entries.append({"name": name, "type": type(layer).__name__, "config": layer.config(),
                            "method": p.method, "rank": p.rank, "rel_error": p.error,
                            "params_before": ctx.dense_params, "params_after": p.params,
                            "macs_before": ctx.dense_macs, "macs_after": p.macs})
        previous = getattr(self.model, COMPRESSION_ATTR, None) or {"plans": [], "layers": [], "skipped": []}
        if rules:
            plan = {"rules": rules, **({"target": self.target} if self.target else {})}
            setattr(new, COMPRESSION_ATTR, {"plans": [*previous.get("plans", []), plan],
                                            "layers": [*previous.get("layers", []), *entries], "skipped": []})
        return new.eval()


def lowfi_accuracy(model: nn.Module, val_set, val_samples: int) -> float:
    """Accuracy (%) on the first ``val_samples`` images of the validation split (the low-fidelity measure)."""
    bs = max(1, min(500, val_samples))
    return evaluate(model, val_set, batch_size=bs, max_batches=math.ceil(val_samples / bs))["accuracy"]


def _finetune(build: Callable[[], nn.Module], train_set, batches: int, *, lr: float, batch_size: int,
              seed: int, teacher: nn.Module | None = None) -> tuple[nn.Module, float | None]:
    """A freshly built model fine-tuned for ``batches`` batches (SGD, one cosine schedule over all of them;
    more batches than an epoch run as several epochs of equal length). With ``teacher``, the loss distils
    from it as ``tensorslim finetune --distill`` does (α 0.5, T 4).

    A run that diverges is restarted from the decomposed weights at a tenth of the learning rate, then a
    hundredth; if all diverge the model is returned as decomposed. Returns the model and the learning rate
    that worked (None: not fine-tuned).
    """
    if batches <= 0:
        return build(), None
    per_epoch = math.ceil(len(train_set) / batch_size)
    epochs = math.ceil(batches / per_epoch)
    for rate in (lr, lr / 10, lr / 100):
        model = build()
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=rate, max_batches=math.ceil(batches / epochs),
                          seed=seed, distill_alpha=0.5 if teacher is not None else 0.0)
        try:
            train(model, train_set, None, cfg, teacher=teacher, log=None)
        except TensorSlimError as err:
            if "diverged" not in str(err):
                raise
            continue
        return model.eval(), rate
    return build(), None
