"""Fine-tuning schedules: when each chosen layer is decomposed, and what is trained after it.

The input is the UNCOMPRESSED model (a model directory or an ``nn.Module`` built by tensorslim). What to
decompose comes from a plan (any plan: globs, ratios, VBMF...) or from a global budget (sensitivity →
:func:`tensorslim.finetune.allocate` → plan). The plan is first RESOLVED once on the original weights: every
layer it compresses gets one explicit rule (method, rank, options) and layers the plan skips (not faster,
method does not apply) stay dense. All schedules therefore produce the same architecture; only the order of
decomposition and training differs.

Training budget (so that schedules compare at EQUAL total epochs)
----------------------------------------------------------------
``epochs`` (a float) is the TOTAL fine-tuning budget, counted in optimizer steps and split as evenly as possible
over the schedule's steps; every phase runs :func:`tensorslim.train.train` with a fresh cosine learning-rate
schedule and restarts the optimizer (momentum), as separate fine-tunings do (the arithmetic: :mod:`.phases`).

Schedules
---------
``one-shot``
    One step: decompose every chosen layer, then fine-tune the whole network for all S steps.
``iterative`` (Astrid & Lee 2017)
    One step per chosen layer, in ``order``: decompose that layer, fine-tune the whole network for S/n steps.
``hybrid-conv-iterative``
    One step per chosen Conv2d layer, in ``order`` (as iterative), then ONE final step that decomposes every
    chosen Linear layer at once (one-shot for the FC head); n = number of convs + 1 (+0 if no FC is chosen).
``hybrid-factors-first``
    One step per chosen layer, in ``order``: decompose it, train ONLY the new factors (the replacement
    module's parameters, via ``train(params=...)``; the rest of the net is frozen but BatchNorm statistics
    still update) for ``factor_fraction`` of the step's steps (default 0.25), then the whole network for the
    rest. Factor-only steps count as full optimizer steps in S.

Orders: ``forward`` (input to output), ``backward`` (output to input), ``sensitivity`` (least sensitive
first: the validation accuracy drop when only that layer is decomposed at its resolved rank, on
``sensitivity_samples`` validation images, ascending).

Distillation (``distill=True``): the uncompressed model is the teacher; the loss is
``(1 − α)·CE + α·T²·KL`` with ``distill_alpha`` (default 0.5 when distilling) and ``distill_temperature`` 4.

Learning rate: fine-tuning defaults to ``lr=0.01`` (SGD) / ``5e-4`` (AdamW) unless overridden.

Output directory and resume
---------------------------
While running, ``OUT/`` holds ``progress.json`` (settings + records of completed steps),
``steps/NN/`` (the model directory after step NN; train's per-epoch checkpoint inside, so an interrupted step
resumes from its last epoch) and ``steps/NN-factors/`` (the factors-only phase). Ctrl-C leaves the last
completed step's directory as a loadable model and rerunning the same call resumes after it, from the
interrupted step's last epoch checkpoint (different settings on the same OUT are refused); so does ``kill -9``,
as every file and directory is written atomically. At the end OUT is atomically replaced by the final MODEL DIRECTORY
(``model.json``, ``weights.safetensors``, ``metrics.json``) with ``finetune.json`` (the full record) and,
for budgets, ``sensitivity.json`` inside; rerunning then just returns that result.

Latency budgets
---------------
``budget="latency<=0.25"`` (alone or with ``params``, ``macs``, ``drop``) needs ``latency_timer`` (a
:data:`tensorslim.study.latency.LayerTimer`; the command passes ONNX Runtime's,
:func:`tensorslim.cli.explore.ort_layer_ms`): every dense layer, every measured point's replacement and the dense
model are timed into the per-machine latency table ``latency_cache`` (default
:func:`tensorslim.study.latency.default_cache_path`), and the allocation meets the table's estimate
(:func:`tensorslim.finetune.sensitivity.allocate`). With ``model_latency`` (the command passes
:func:`tensorslim.cli.explore.ort_model_latency`: both exported files timed in alternation, batch 1, 1 thread) the
allocated model is measured against the dense one and re-allocated with the estimate corrected when it misses the
budget by more than 10 % (:func:`tensorslim.finetune.sensitivity.allocate_for_latency`, at most 3 rounds). The
record's ``latency`` holds the rounds (estimate, measurement) and the table's machine; the allocation is kept in
``steps/latency.json`` so that a resumed run (and every process under torchrun) uses the same plan.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from .. import data, modeldir
from .. import distributed as D
from .. import plan as plan_mod
from ..cost import profile
from ..data import user as user_data
from ..errors import TensorSlimError
from ..methods import targets
from ..surgery import candidates, compress, compress_with_report
from ..train import TrainConfig, _num_batches, evaluate
from ..train import train as trainer
from .allocation import allocate, parse_budget, single_layer_rule
from .phases import _groups, phase_shape, plan_phases, split_steps
from .rundir import LATENCY as LATENCY
from .rundir import (
    PROGRESS,
    RECORD,
    SENSITIVITY,
    STEPS_DIR,
    FinetuneError,
    _jsonify,
    _latency_plan,
    _temporary,
    _write_progress,
)
from .sensitivity import DEFAULT_GRID, layer_drops, sensitivity

SCHEDULES = ("one-shot", "iterative", "hybrid-conv-iterative", "hybrid-factors-first")
ORDERS = ("forward", "backward", "sensitivity")
FINETUNE_LR = {"sgd": 0.01, "adamw": 5e-4}

@dataclasses.dataclass
class FinetuneResult:
    model: nn.Module
    out: Path | None
    record: dict[str, Any]

    @property
    def accuracy(self) -> float | None:
        return self.record.get("test", {}).get("after")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.record)


def _load_source(source, out) -> tuple[nn.Module, dict[str, Any]]:
    if isinstance(source, nn.Module):
        if out is not None and getattr(source, modeldir.SPEC_ATTR, None) is None:
            raise FinetuneError("finetune with out= saves a model directory, which needs a model built by "
                                "tensorslim (tensorslim.modeldir.build or load) to name its builder; this one has "
                                "no spec (leave out= unset and save the result yourself)")
        return copy.deepcopy(source), {"path": None, "dataset": getattr(source, "tensorslim_dataset", None)}
    path = Path(source)
    meta = modeldir.read_meta(path)
    return modeldir.load(path), {"path": str(path), "dataset": meta.get("dataset")}


def _datasets(dataset, data_dir, options: Mapping[str, Any] | None):
    """(name for records or None, settings entry, train, val, test or None, input shape or None).

    ``dataset`` is a built-in dataset's name or user data (:func:`tensorslim.data.user.splits`: a Dataset, a
    DataLoader, a ``(train, val[, test])`` tuple or a dict of them)."""
    if isinstance(dataset, str):
        opts = dict(options or {})
        sets = tuple(data.load(dataset, split, data_dir, **opts) for split in ("train", "val", "test"))
        return dataset, dataset, *sets, tuple(sets[0].input_shape)
    if options:
        raise FinetuneError("dataset_options apply to a named dataset, not to your own Dataset or DataLoader")
    train, val, test, describe = user_data.splits(dataset)
    return None, describe, train.dataset, val.dataset, None if test is None else test.dataset, train.input_shape


def make_config(overrides: Mapping[str, Any], *, distill: bool):
    """The TrainConfig of a fine-tuning run: fine-tuning learning rates, distillation weight when distilling."""

    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"epochs"}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise FinetuneError(f"unknown training option {bad[0]!r}; known: {', '.join(sorted(fields))}")
    kw = {k: v for k, v in overrides.items() if v is not None}
    opt = kw.get("optimizer", "sgd")
    kw.setdefault("lr", FINETUNE_LR.get(opt, 0.01))
    if distill:
        kw.setdefault("distill_alpha", 0.5)
    return TrainConfig(epochs=1, **kw)


def resolve_plan(model: nn.Module, plan, input_shape: tuple[int, ...], target: str | None = None
                 ) -> tuple[nn.Module, list[dict], list]:
    """Apply ``plan`` once: (the one-shot compressed model, one explicit rule per compressed layer, skipped).
    ``target``: as in :func:`tensorslim.surgery.compress` (None: the plan's own, else the default)."""

    parsed = plan_mod.read(plan) if isinstance(plan, (str, Path)) else plan_mod.parse(plan)
    compressed, report = compress_with_report(model, parsed, input_shape, target=target)
    if not report.layers:
        reasons = "; ".join(f"{s['name']}: {s['reason']}" for s in report.skipped[:3])
        raise FinetuneError("the plan compresses no layer" + (f" ({reasons})" if reasons else ""))
    rules = [single_layer_rule(e["name"], e["method"], e["rank"], parsed.rule_for(e["name"]).options)
             for e in report.layers]
    return compressed, rules, report.skipped




def finetune(
    source,
    dataset: Any = None,
    *,
    plan=None,
    budget=None,
    schedule: str = "one-shot",
    epochs: float = 1.0,
    distill: bool = False,
    order: str = "forward",
    out: str | Path | None = None,
    data_dir: str | None = None,
    log: Callable[[str], None] | None = print,
    factor_fraction: float = 0.25,
    sensitivity_samples: int = 1000,
    sensitivity_methods=None,
    rank_grid=None,
    dataset_options: Mapping[str, Any] | None = None,
    evaluate_test: bool = True,
    latency_timer=None,
    model_latency=None,
    latency_cache: str | Path | None = None,
    latency_repeats: int = 30,
    target: str | None = None,
    **cfg_overrides: Any,
) -> FinetuneResult:
    """Compress ``source`` by ``plan`` or ``budget`` and fine-tune it with ``schedule``; see the module doc.

    ``source``: a model directory, or an ``nn.Module`` (with ``out``, one built by tensorslim so that the
    result can name its builder). ``dataset``: a built-in dataset's name (default: the model's own), or your
    own data: a ``torch.utils.data.Dataset`` or ``DataLoader`` of ``(C×H×W float tensor, int label)``, a
    ``(train, val[, test])`` tuple or a ``{"train", "val", "test"}`` dict of them
    (:func:`tensorslim.data.user.splits`: a missing val split is carved off train, a missing test split skips
    the test accuracy).

    ``cfg_overrides`` are :class:`tensorslim.train.TrainConfig` fields (batch_size, optimizer, lr,
    weight_decay, warmup_epochs, label_smoothing, seed, distill_alpha, distill_temperature, max_batches);
    ``batch_size`` is the GLOBAL batch under torchrun. A ``latency`` budget needs ``latency_timer`` (and is
    checked against the measured model with ``model_latency``); see the module doc.

    ``target``: the deployment target (:mod:`tensorslim.methods.targets`: ``ort-x86``, ``xnnpack-arm``, ...)
    whose channel multiple the ranks are rounded to: a budget's sensitivity grid and a plan's rules alike (a
    plan's explicit ranks stay as written). It is recorded in the saved model, so that ``export`` applies the
    target's passes. None: a plan's own target, else the machine's default.
    """

    log = log or (lambda _m: None)
    info = D.current()
    if not info.is_main:
        log = lambda _m: None  # noqa: E731
    if schedule not in SCHEDULES:
        raise FinetuneError(f"schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
    if order not in ORDERS:
        raise FinetuneError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    if (plan is None) == (budget is None):
        raise FinetuneError("give exactly one of plan or budget")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not 0 <= epochs < 1e6:
        raise FinetuneError(f"epochs must be a number >= 0, not {epochs!r}")
    if not 0 <= factor_fraction < 1:
        raise FinetuneError(f"factor_fraction must lie in [0, 1), not {factor_fraction}")
    if budget is not None:
        budget = parse_budget(budget)
        if "latency" in budget and latency_timer is None:
            raise FinetuneError("a latency budget needs latency_timer= (module, input_shape, threads=, repeats=, "
                                "warmup=) -> ms, e.g. tensorslim.cli.explore.ort_layer_ms (ONNX Runtime)")
    if target is not None:
        try:
            target = targets.get(target).name
        except TensorSlimError as err:
            raise FinetuneError(str(err)) from None
    cfg = make_config(cfg_overrides, distill=distill)
    if info.active and cfg.batch_size % info.world_size:
        raise FinetuneError(f"batch size {cfg.batch_size} must be divisible by the {info.world_size} processes")

    original, src = _load_source(source, out)
    if dataset is None:
        dataset = src["dataset"]
    if dataset is None or (isinstance(dataset, str) and not dataset):
        raise FinetuneError("no dataset given and the model records none")
    dataset, data_setting, train_set, val_set, test_set, data_shape = _datasets(dataset, data_dir, dataset_options)
    input_shape = tuple(getattr(original, modeldir.INPUT_SHAPE_ATTR, None) or data_shape)
    if dataset is None and data_shape != input_shape:
        raise FinetuneError(f"the data's images are {','.join(map(str, data_shape))} but the model takes "
                            f"{','.join(map(str, input_shape))}")
    setattr(original, modeldir.INPUT_SHAPE_ATTR, input_shape)
    out = Path(out) if out is not None else None
    if test_set is None and evaluate_test:
        log("note: no test split given: test accuracy is not measured (pass {'train': ..., 'val': ..., "
            "'test': ...} to measure it)")
        evaluate_test = False

    settings = {"source": src["path"], "dataset": data_setting, "schedule": schedule, "order": order,
                "epochs": float(epochs), "distill": bool(distill), "factor_fraction": float(factor_fraction),
                "budget": budget, "plan": None, "config": dataclasses.asdict(cfg),
                "world_size": info.world_size}
    if target is not None:  # runs made without a target keep their settings, and so resume
        settings["target"] = target
    if budget is None:
        parsed = plan_mod.read(plan) if isinstance(plan, (str, Path)) else plan_mod.parse(plan)
        settings["plan"] = parsed.to_dict()

    # a finished run: return it
    if out is not None and (out / RECORD).is_file() and modeldir.is_model_dir(out):
        record = json.loads((out / RECORD).read_text())
        if record.get("settings") != _jsonify(settings):
            raise FinetuneError(f"{out}: holds a finished fine-tuning run with other settings; use another --out")
        log(f"{out}: already finished; nothing to do")
        return FinetuneResult(modeldir.load(out), out, record)
    progress: dict[str, Any] | None = None
    if out is not None and out.exists():
        if (out / PROGRESS).is_file():
            progress = json.loads((out / PROGRESS).read_text())
            if progress.get("settings") != _jsonify(settings):
                raise FinetuneError(f"{out}: holds an unfinished run with other settings; use another --out "
                                    "or delete it")
        elif any(p.name not in (SENSITIVITY, STEPS_DIR) and not _temporary(p.name) for p in out.iterdir()):
            raise FinetuneError(f"{out}: exists and is not a fine-tuning run directory")

    # what to decompose
    sens_table = latency_record = None
    if budget is not None:
        grid = tuple(rank_grid) if rank_grid else DEFAULT_GRID
        sens_table = sensitivity(original, val_set, sensitivity_methods, grid, input_shape=input_shape,
                                 max_samples=sensitivity_samples, cache=(out / SENSITIVITY) if out and info.is_main
                                 else None, log=log, target=target)
        if "latency" in budget:
            plan_dict, latency_record = _latency_plan(
                original, budget, sens_table, input_shape, out, info, log, timer=latency_timer,
                model_latency=model_latency, cache_path=latency_cache, repeats=latency_repeats)
        else:
            plan_dict = allocate(original, budget, sens_table, input_shape=input_shape)
        log(plan_dict["comment"])
    else:
        plan_dict = settings["plan"]
    oneshot_model, rules, skipped = resolve_plan(original, plan_dict, input_shape, target)
    target = target or plan_mod.parse(plan_dict).with_target(None).target  # the one every step compresses for
    kinds = {c.name: ("conv" if isinstance(c.module, nn.Conv2d) else "linear")
             for c in _candidates(original, input_shape)}
    drops = None
    if order == "sensitivity":
        drops = layer_drops(original, rules, val_set, input_shape=input_shape, max_samples=sensitivity_samples)
        ordered = sorted(rules, key=lambda r: drops[r["layers"]])  # stable: forward order on ties
    elif order == "backward":
        ordered = rules[::-1]
    else:
        ordered = list(rules)
    groups = _groups(schedule, ordered, kinds)
    steps_per_epoch = _num_batches(train_set, cfg.batch_size, cfg.max_batches)
    total_steps = round(float(epochs) * steps_per_epoch)
    phases = plan_phases(schedule, len(groups), total_steps, steps_per_epoch, factor_fraction)

    before = profile(original, input_shape).total
    record: dict[str, Any] = {
        "settings": _jsonify(settings), "plan": {"rules": rules}, "skipped": skipped,
        "order_drops": drops, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
        "original": {"params": before.params, "macs": before.macs},
    }
    if latency_record is not None:
        record["latency"] = latency_record
    if evaluate_test:
        record["test"] = {"original": evaluate(original, test_set)["accuracy"],
                          "before": evaluate(oneshot_model, test_set)["accuracy"]}
        log(f"test accuracy: original {record['test']['original']:.2f}%, all layers decomposed without "
            f"fine-tuning {record['test']['before']:.2f}%")
    del oneshot_model

    teacher = None
    if distill:
        teacher = copy.deepcopy(original).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    run_cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size // info.world_size) if info.active else cfg

    steps_done: list[dict[str, Any]] = list(progress["steps"]) if progress else []
    model = original
    if steps_done:
        model = modeldir.load(out / STEPS_DIR / f"{len(steps_done):02d}")
        log(f"resuming {out} after step {len(steps_done)}/{len(groups)}")
    elif out is not None and info.is_main:
        _write_progress(out, settings, steps_done)
    D.barrier()
    save_kwargs = {"dataset": dataset, "input_shape": input_shape}
    for k, group in enumerate(groups):
        if k < len(steps_done):
            continue
        names = [r["layers"] for r in group]
        model = _compress(model, group, input_shape, target)
        val_before = evaluate(model, val_set)["accuracy"]
        step_rec: dict[str, Any] = {"index": k + 1, "layers": names, "val_before": val_before, "phases": []}
        step_dir = out / STEPS_DIR / f"{k + 1:02d}" if out is not None else None
        trained_last = False
        for ph in phases[k]:
            seed = cfg.seed + 1009 * k + (1 if ph["kind"] == "factors" else 0)
            pcfg = dataclasses.replace(run_cfg, epochs=int(ph["epochs"]), max_batches=int(ph["max_batches"]),
                                       seed=seed)
            params = None
            if ph["kind"] == "factors":
                params = [p for n in names for p in model.get_submodule(n).parameters()]
                pdir = out / STEPS_DIR / f"{k + 1:02d}-factors" if out is not None else None
            else:
                pdir = step_dir
            history = trainer(model, train_set, None, pcfg, out=pdir, teacher=teacher, params=params,
                              save_kwargs=save_kwargs, log=log)
            trained_last = ph["kind"] == "all"
            step_rec["phases"].append({**ph, "history": history})
        if step_dir is not None and not trained_last and info.is_main:
            modeldir.save(model, step_dir, dataset=dataset)
        step_rec["val_after"] = evaluate(model, val_set)["accuracy"]
        log(f"step {k + 1}/{len(groups)} [{', '.join(names)}]: val accuracy {val_before:.2f}% → "
            f"{step_rec['val_after']:.2f}%")
        steps_done.append(step_rec)
        if out is not None and info.is_main:
            _write_progress(out, settings, steps_done)
        D.barrier()

    after = profile(model, input_shape).total
    record["steps"] = steps_done
    record["optimizer_steps"] = sum(ph["optimizer_steps"] for s in steps_done for ph in s["phases"])
    record["compressed"] = {"params": after.params, "macs": after.macs,
                            "params_reduction": before.params / after.params,
                            "macs_reduction": before.macs / after.macs}
    record["val_after"] = steps_done[-1]["val_after"] if steps_done else None
    if evaluate_test:
        record["test"]["after"] = evaluate(model, test_set)["accuracy"]
        log(f"test accuracy after fine-tuning: {record['test']['after']:.2f}% "
            f"(original {record['test']['original']:.2f}%); params {before.params:,} → {after.params:,} "
            f"({before.params / after.params:.2f}×), MACs {before.macs:,} → {after.macs:,} "
            f"({before.macs / after.macs:.2f}×)")
    if out is not None and info.is_main:
        metrics = {"params": after.params, "macs": after.macs,
                   "original": {"path": src["path"], **record["original"]}}
        if evaluate_test:
            metrics["accuracy"] = {"test": round(record["test"]["after"], 4)}
            metrics["evaluated_on"] = {"test": dataset or "user"}
        extra = {RECORD: (json.dumps(_jsonify(record), indent=1) + "\n").encode()}
        if sens_table is not None:
            extra[SENSITIVITY] = (json.dumps(sens_table, indent=1) + "\n").encode()
        modeldir.save(model, out, dataset=dataset, input_shape=input_shape, metrics=metrics, extra_files=extra)
    D.barrier()
    return FinetuneResult(model, out, _jsonify(record))



def _candidates(model, input_shape):
    return candidates(model, input_shape)


def _compress(model: nn.Module, rules: list[dict], input_shape: tuple[int, ...], target: str | None = None
              ) -> nn.Module:
    new = compress(model, {"rules": rules}, input_shape, target=target)
    for attr in (modeldir.SPEC_ATTR, modeldir.INPUT_SHAPE_ATTR):
        if getattr(new, attr, None) is None and getattr(model, attr, None) is not None:
            setattr(new, attr, getattr(model, attr))
    return new



__all__ = ["ORDERS", "SCHEDULES", "FinetuneError", "FinetuneResult", "finetune", "make_config", "phase_shape",
           "plan_phases", "resolve_plan", "split_steps"]
