"""The training budget of a fine-tuning schedule, in optimizer steps (so that schedules compare at EQUAL total
epochs).

``epochs`` (a float) is the TOTAL fine-tuning budget, counted in optimizer steps:
``S = round(epochs × steps_per_epoch)`` with ``steps_per_epoch = ceil(N_train / batch_size)`` (capped by
``max_batches``). A schedule has n steps; step k gets ``S // n`` optimizer steps (the first ``S mod n`` steps
one more). A phase of s optimizer steps runs :func:`tensorslim.train.train` with
``epochs_k = ceil(s / steps_per_epoch)`` and ``max_batches = ceil(s / epochs_k)`` (so at most epochs_k − 1
extra steps from rounding; the record lists the exact count), a fresh cosine learning-rate schedule, and the
seed ``seed + 1009·k`` (+1 for a factors phase) so that truncated epochs see different batches.
Every phase restarts the optimizer (momentum) and the cosine schedule, as separate fine-tunings do.

:func:`plan_phases` gives each schedule step its phases; ``_groups`` the layers decomposed at each step.
"""

from __future__ import annotations

import math


def _groups(schedule: str, ordered: list[dict], kinds: dict[str, str]) -> list[list[dict]]:
    if schedule == "one-shot":
        return [ordered]
    if schedule in ("iterative", "hybrid-factors-first"):
        return [[r] for r in ordered]
    convs = [[r] for r in ordered if kinds[r["layers"]] == "conv"]
    fcs = [r for r in ordered if kinds[r["layers"]] != "conv"]
    return convs + ([fcs] if fcs else [])


def split_steps(total: int, n: int) -> list[int]:
    """``total`` optimizer steps over n schedule steps as evenly as possible (first ones get the remainder)."""
    return [total // n + (1 if k < total % n else 0) for k in range(n)]


def phase_shape(steps: int, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs, max_batches) for a phase of ``steps`` optimizer steps: epochs × max_batches ≥ steps, minimal."""
    epochs = math.ceil(steps / steps_per_epoch)
    return epochs, math.ceil(steps / epochs)


def plan_phases(schedule: str, n_steps: int, total_steps: int, steps_per_epoch: int,
                factor_fraction: float) -> list[list[dict[str, int | str]]]:
    """Per schedule step, its training phases: ``{"kind": "factors"|"all", "steps", "epochs", "max_batches"}``."""
    out = []
    for s in split_steps(total_steps, n_steps):
        phases = []
        f = round(factor_fraction * s) if schedule == "hybrid-factors-first" else 0
        for kind, k in (("factors", f), ("all", s - f)):
            if k > 0:
                e, mb = phase_shape(k, steps_per_epoch)
                phases.append({"kind": kind, "steps": k, "epochs": e, "max_batches": mb,
                               "optimizer_steps": e * mb})
        out.append(phases)
    return out


__all__ = ["phase_shape", "plan_phases", "split_steps"]
