"""Training: it learns, it checkpoints every epoch, and a resumed run ends where an uninterrupted one does."""

import math

import pytest
import torch

from tensorslim import data, modeldir
from tensorslim.train import TrainConfig, evaluate, lr_at, train


def _setup():
    train_set = data.load("synthetic", "train")
    val_set = data.load("synthetic", "val")
    c, h, w = train_set.input_shape
    spec = {"builder": "lenet5", "kwargs": {"in_channels": c, "num_classes": train_set.num_classes}}
    torch.manual_seed(0)
    return modeldir.build(spec, (c, h, w)), train_set, val_set


def test_training_learns_the_synthetic_task():
    model, train_set, val_set = _setup()
    before = evaluate(model, val_set)["accuracy"]
    train(model, train_set, val_set, TrainConfig(epochs=2, optimizer="adamw"), log=None)
    after = evaluate(model, val_set)["accuracy"]
    assert after > max(80.0, before + 30)


def test_cosine_schedule_hand_values():
    cfg = TrainConfig(lr=1.0, warmup_epochs=1)
    assert lr_at(0, 100, cfg, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, cfg, 10) == pytest.approx(1.0)
    assert lr_at(55, 100, cfg, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lr_at(100, 100, cfg, 10) == pytest.approx(0.0)


def test_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    import tensorslim.train as train_module

    cfg = TrainConfig(epochs=2, optimizer="sgd", max_batches=8)
    model_a, train_set, _ = _setup()
    train(model_a, train_set, None, cfg, out=tmp_path / "a", log=None)

    # Interrupt the same run right after its first epoch was written (as Ctrl-C would).
    real_write = train_module._write_epoch

    def write_then_interrupt(*args, **kwargs):
        real_write(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_write_epoch", write_then_interrupt)
    model_b, _, _ = _setup()
    with pytest.raises(KeyboardInterrupt):
        train(model_b, train_set, None, cfg, out=tmp_path / "b", log=None)
    monkeypatch.setattr(train_module, "_write_epoch", real_write)
    assert modeldir.read_metrics(tmp_path / "b")["history"][-1]["epoch"] == 1

    model_c, _, _ = _setup()  # a fresh process: resumes from the directory
    history = train(model_c, train_set, None, cfg, out=tmp_path / "b", log=None)
    assert [h["epoch"] for h in history] == [1, 2]
    for (k, a), (_, c) in zip(model_a.state_dict().items(), model_c.state_dict().items()):
        assert torch.allclose(a, c, atol=1e-5), k


def test_distillation_loss_is_zero_for_identical_logits():
    from tensorslim.train import distillation_loss

    logits = torch.randn(8, 10)
    assert distillation_loss(logits, logits, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(logits, -logits, 4.0).item() > 0


def test_progress_lines_when_stderr_is_not_a_terminal(monkeypatch, capsys):
    """Without a terminal a whole epoch used to print nothing: now a line at most every PROGRESS_INTERVAL
    seconds says how far the epoch is, with the running loss and an ETA."""
    import torch

    from tensorslim import data
    from tensorslim import train as train_mod

    monkeypatch.setattr(train_mod, "PROGRESS_INTERVAL", 0.0)  # every batch, for the test
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    ds = data.load("synthetic", "train", num_samples=256, num_classes=4, input_shape=(1, 8, 8))
    train_mod.train(model, ds, None, train_mod.TrainConfig(epochs=1, batch_size=32), log=lambda _m: None)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch 1/1:")]
    assert len(lines) == 7  # batches 1..7 of 8 (the last one ends the epoch)
    assert lines[0].startswith("epoch 1/1: 1/8 batches (12 %), loss ") and lines[-1].endswith(" s")
    assert all("ETA" in line for line in lines)
    train_mod.train(model, ds, None, train_mod.TrainConfig(epochs=1, batch_size=32), log=None)
    assert capsys.readouterr().err == ""  # log=None: silent (low-fidelity fine-tuning inside a search)
