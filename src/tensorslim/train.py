"""Training and evaluation loops.

One loop serves training from scratch and fine-tuning: SGD (Nesterov momentum) or AdamW, a per-step cosine
schedule with optional linear warm-up, label smoothing, optional distillation from a teacher, a progress bar,
and, when ``out`` is given, a model directory written after every epoch together with
``checkpoint/train_state.pt`` (optimizer state, epoch, history). Running the same call again resumes after
the last completed epoch; an interrupted run (Ctrl-C or ``kill -9``) leaves the last completed epoch's
directory intact, because each epoch's directory replaces the previous one atomically.

Randomness is derived from ``seed`` and the epoch number (shuffling and dropout), so a resumed run follows
the same course as an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import _atomic, distributed, modeldir
from .data import batches
from .data import user as user_data
from .errors import TensorSlimError

CHECKPOINT = "checkpoint/train_state.pt"


class TrainingDiverged(TensorSlimError):
    """The loss became NaN or infinite: the learning rate is too high for this model."""


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float | None = None  # None: 0.05 for SGD, 2e-3 for AdamW
    momentum: float = 0.9
    weight_decay: float | None = None  # None: 5e-4 for SGD, 0.05 for AdamW
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    distill_alpha: float = 0.0  # weight of the distillation loss when a teacher is given
    distill_temperature: float = 4.0
    max_batches: int | None = None  # per epoch; for smoke tests and low-fidelity evaluation

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise TensorSlimError(f"optimizer must be 'sgd' or 'adamw', not {self.optimizer!r}")
        if self.epochs < 0 or self.batch_size < 1:
            raise TensorSlimError(f"epochs must be >= 0 and batch size >= 1 (got {self.epochs}, {self.batch_size})")
        if self.lr is None:
            self.lr = 0.05 if self.optimizer == "sgd" else 2e-3
        if self.weight_decay is None:
            self.weight_decay = 5e-4 if self.optimizer == "sgd" else 0.05
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise TensorSlimError(f"distill_alpha must be in [0, 1], not {self.distill_alpha}")


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_at(step: int, total: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Linear warm-up then cosine decay to zero, per optimisation step."""
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _batches(dataset, batch_size: int, shuffle: bool, seed: int):
    return batches(dataset, batch_size, shuffle=shuffle, seed=seed)


def _num_batches(dataset, batch_size: int, limit: int | None) -> int:
    n = math.ceil(len(dataset) / batch_size)
    return min(n, limit) if limit else n


@torch.inference_mode()
def evaluate(model: nn.Module, dataset, *, batch_size: int = 500, max_batches: int | None = None) -> dict[str, float]:
    """Top-1 accuracy (in %) and mean cross-entropy of ``model`` on ``dataset`` (NaN when some labels have no
    output in the model)."""
    dataset = user_data.unwrap(dataset)
    was_training = model.training
    model.eval()
    correct, loss_sum, seen = 0, 0.0, 0
    for i, (x, y) in enumerate(_batches(dataset, batch_size, shuffle=False, seed=0)):
        if max_batches is not None and i >= max_batches:
            break
        out = model(x)
        if int(y.max()) < out.shape[1]:
            loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        else:  # labels the model has no output for (evaluate --force): wrong, and no loss
            loss_sum = math.nan
        correct += (out.argmax(1) == y).sum().item()
        seen += len(y)
    model.train(was_training)
    if seen == 0:
        raise TensorSlimError("evaluation dataset is empty")
    return {"accuracy": 100.0 * correct / seen, "loss": loss_sum / seen, "samples": seen}


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss, scaled by T² so its gradients match the hard loss's magnitude."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), log_target=True,
                    reduction="batchmean") * t * t


#: seconds between progress lines when stderr is not a terminal (a log file, CI, a pipe)
PROGRESS_INTERVAL = 30.0


class _LineProgress:
    """Progress for a stream that is not a terminal: one line every :data:`PROGRESS_INTERVAL` seconds,
    ``epoch 3/20: 120/422 batches (28 %), loss 0.4123, acc 85.10, ETA 54 s``, instead of a redrawn bar."""

    def __init__(self, total: int, desc: str, stream, interval: float):
        self.total, self.desc, self.stream, self.interval = total, desc, stream, interval
        self.n, self.postfix = 0, ""
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.interval and self.n < self.total:
            self.last = now
            eta = (now - self.start) / self.n * (self.total - self.n)
            print(f"{self.desc}: {self.n}/{self.total} batches ({100 * self.n / self.total:.0f} %)"
                  f"{self.postfix}, ETA {eta:.0f} s", file=self.stream, flush=True)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = "".join(f", {k} {v}" for k, v in values.items())

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool = True):
    """A tqdm bar on a terminal; timed progress lines on anything else (so a log shows the run is alive)."""
    from tqdm.auto import tqdm

    if enabled and not sys.stderr.isatty():
        return _LineProgress(total, desc, sys.stderr, PROGRESS_INTERVAL)
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True, disable=not enabled)


def train(
    model: nn.Module,
    train_set,
    val_set=None,
    cfg: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    teacher: nn.Module | None = None,
    params: Iterable[nn.Parameter] | None = None,
    save_kwargs: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = print,
    sync_bn: bool = False,
) -> list[dict[str, Any]]:
    """Train ``model`` in place and return the per-epoch history.

    ``log=None`` runs silently (no progress bar or lines either). ``params`` restricts which parameters are
    optimised (e.g. only new factors); ``out`` makes the run
    checkpointed and resumable; ``save_kwargs`` go to :func:`tensorslim.modeldir.save` (dataset name...).

    Under ``torchrun`` (a process group started by :func:`tensorslim.distributed.init_from_env`) the same loop
    trains data-parallel: the model is wrapped in DistributedDataParallel, each process reads its shard of
    ``train_set`` (``cfg.batch_size`` is then the per-process batch), the epoch's statistics are summed over
    the processes, every process reads the checkpoint to resume, and only rank 0 writes it.
    """
    info = distributed.current()
    cfg = cfg or TrainConfig()
    show_progress = info.is_main and log is not None  # log=None: silent, progress bar or lines included
    log = (log or (lambda _msg: None)) if info.is_main else (lambda _msg: None)
    train_set = user_data.unwrap(train_set, "train data")
    val_set = None if val_set is None else user_data.unwrap(val_set, "val data")
    local_set = distributed.shard(train_set, info)
    if info.device != "cpu":
        model.to(info.device)
        if teacher is not None:
            teacher.to(info.device)
    optimizer = make_optimizer(params if params is not None else model.parameters(), cfg)
    steps_per_epoch = _num_batches(local_set, cfg.batch_size, cfg.max_batches)
    total_steps = steps_per_epoch * cfg.epochs
    history: list[dict[str, Any]] = []
    start_epoch = 0

    if out is not None:
        _atomic.recover(out)  # a directory a killed run had moved aside (where it cannot be swapped in one step)
        state = _read_checkpoint(Path(out))
        if state is not None:
            modeldir.apply_state(model, modeldir.load_weights(Path(out) / modeldir.WEIGHTS), out)
            optimizer.load_state_dict(state["optimizer"])
            history = list(state["history"])
            start_epoch = int(state["epoch"])
            if start_epoch >= cfg.epochs:
                log(f"{out}: already trained for {start_epoch} epochs; nothing to do")
                return history
            log(f"resuming {out} after epoch {start_epoch}/{cfg.epochs}")

    net = distributed.wrap(model, info, sync_bn=sync_bn)
    if teacher is not None:
        teacher.eval()
    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout and friends: reproducible across resumes
        net.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", enabled=show_progress)
        for i, (x, y) in enumerate(_batches(local_set, cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 + epoch)):
            if i >= steps_per_epoch:
                break
            x, y = x.to(info.device), y.to(info.device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + i, total_steps, cfg, steps_per_epoch)
            out_logits = net(x)
            loss = F.cross_entropy(out_logits, y, label_smoothing=cfg.label_smoothing)
            if teacher is not None and cfg.distill_alpha > 0:
                with torch.no_grad():
                    t_logits = teacher(x)
                loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * distillation_loss(
                    out_logits, t_logits, cfg.distill_temperature)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"training diverged at epoch {epoch + 1}, step {i} (loss {loss.item()}); "
                                      "lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += (out_logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100.0 * correct / seen:.2f}")
            bar.update(1)
        bar.close()
        loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, correct, seen], info)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1, seen),
            "train_accuracy": 100.0 * correct / max(1, seen),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if val_set is not None:
            val = evaluate(model if info.device == "cpu" else copy.deepcopy(model).cpu(), val_set)
            record["val_loss"], record["val_accuracy"] = val["loss"], val["accuracy"]
        history.append(record)
        log(_epoch_line(record, cfg.epochs))
        if out is not None:
            if info.is_main:
                _write_epoch(model, Path(out), optimizer, history, cfg, save_kwargs or {})
            distributed.barrier()
    return history


def _epoch_line(r: dict[str, Any], epochs: int) -> str:
    line = f"epoch {r['epoch']}/{epochs}  loss {r['train_loss']:.4f}  train acc {r['train_accuracy']:.2f}%"
    if "val_accuracy" in r:
        line += f"  val acc {r['val_accuracy']:.2f}%"
    return line + f"  ({r['seconds']:.1f} s)"


def _write_epoch(model, out: Path, optimizer, history, cfg: TrainConfig, save_kwargs: dict[str, Any]) -> None:
    """Replace the model directory with this epoch's model, metrics and optimizer state, all at once."""
    buf = io.BytesIO()
    torch.save({"epoch": history[-1]["epoch"], "optimizer": optimizer.state_dict(), "history": history,
                "config": dataclasses.asdict(cfg)}, buf)
    kwargs = dict(save_kwargs)
    metrics = {**kwargs.pop("metrics", {}), "history": history}
    modeldir.save(model, out, metrics=metrics, extra_files={CHECKPOINT: buf.getvalue()}, **kwargs)


def finished_history(out: str | Path, epochs: int) -> list[dict[str, Any]] | None:
    """The history of the run checkpointed in ``out`` when it has trained ``epochs`` epochs or more, else None.

    Reads only the checkpoint (no model, no data), so a rerun of a finished job can say so at once.
    """
    if not Path(out).exists():
        return None
    _atomic.recover(out)
    state = _read_checkpoint(Path(out))
    if state is None or int(state["epoch"]) < epochs:
        return None
    return list(state["history"])


def _read_checkpoint(out: Path) -> dict[str, Any] | None:
    file = out / CHECKPOINT
    if not file.is_file():
        return None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise TensorSlimError(f"{file}: unreadable checkpoint ({err}); delete it to start afresh") from None
