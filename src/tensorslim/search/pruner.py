"""The search's multi-fidelity pruner: near-chance trials after any epoch, dominated ones after a warm-up."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.trial import TrialState

from ..errors import TensorSlimError


def dominates(a: Mapping[str, Any], b: Mapping[str, Any], epoch: int, margin: float) -> bool:
    """Trial ``a`` dominates ``b`` after epoch index ``epoch``: ``margin`` points more validation accuracy there,
    at no more params and MACs (each a mapping with ``val_curve``, ``params``, ``macs``: a trial's user attrs)."""
    return (a["val_curve"][epoch] >= b["val_curve"][epoch] + margin and a["params"] <= b["params"]
            and a["macs"] <= b["macs"])


@dataclasses.dataclass
class Pruner:
    """Prune a trial after an epoch that is not its last when its accuracy is at most ``chance_factor``×chance,
    or, after the first ``warmup_epochs`` epochs, when a completed trial had ``margin`` points more at the same
    epoch at no more params and MACs (once ``min_completed`` trials are complete).

    The warm-up is there because first-epoch accuracies of a short low fidelity do not rank models: in the
    45-minute NAS run of BENCHMARKS.md (3 epochs of 60 batches), of the pairs of completed trials that the
    dominance rule separates after epoch 1, the "pruned" one ended at least as accurate in 64 of 137; after
    epoch 2 in 11 of 74. With the 2-epoch default fidelity only the chance rule prunes."""

    margin: float = 0.5
    chance_factor: float = 1.5
    min_completed: int = 4
    warmup_epochs: int = 1

    def __post_init__(self) -> None:
        if self.warmup_epochs < 0 or self.min_completed < 1 or self.margin < 0:
            raise TensorSlimError(f"pruner needs warmup_epochs >= 0, min_completed >= 1 and margin >= 0, got "
                                  f"{self.warmup_epochs}, {self.min_completed}, {self.margin}")

    def reason(self, study: Any, curve: Sequence[float], params: int, macs: int, num_classes: int) -> str | None:
        e, acc = len(curve) - 1, curve[-1]
        if acc <= self.chance_factor * 100.0 / num_classes:
            return f"accuracy {acc:.1f}% after epoch {e + 1} is near chance"
        if len(curve) <= self.warmup_epochs:
            return None
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if len(t.user_attrs.get("val_curve", [])) > e]
        if len(done) < self.min_completed:
            return None
        this = {"val_curve": curve, "params": params, "macs": macs}
        for t in done:
            if dominates(t.user_attrs, this, e, self.margin):
                return f"dominated after epoch {e + 1} by trial {t.number}"
        return None
