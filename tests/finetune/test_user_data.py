"""finetune, train and evaluate on the user's own Dataset / DataLoader (tensorslim.data.user)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tensorslim.data import user
from tensorslim.errors import DataError
from tensorslim.finetune import FinetuneError, finetune
from tensorslim.train import TrainConfig, evaluate, train


def _plain_net() -> nn.Module:
    """A user's model: a plain nn.Module that tensorslim did not build (no spec)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def tensors(sets):
    """The synthetic set as the user's own tensors (TensorDatasets, not tensorslim datasets)."""
    out = []
    for ds in sets:
        xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
        out.append(TensorDataset(torch.stack(xs), torch.tensor(ys)))
    return out


def _hand_accuracy(model: nn.Module, ds: TensorDataset) -> float:
    x, y = ds.tensors
    with torch.no_grad():
        return 100.0 * (model.eval()(x).argmax(1) == y).float().mean().item()


def test_finetune_takes_user_datasets_and_a_plain_module(tensors):
    train_set, val_set, test_set = tensors
    model = _plain_net()
    train(model, train_set, None, TrainConfig(epochs=1, batch_size=64, optimizer="adamw"), log=None)
    plan = {"rules": [{"layers": "2", "method": "tucker2", "rank": [4, 4]}, {"layers": "6", "method": "svd",
                                                                               "rank": 8}]}
    result = finetune(model, {"train": train_set, "val": val_set, "test": test_set}, plan=plan, epochs=0.5,
                      batch_size=64, log=None)
    # the recorded accuracies are those of the models on the user's test tensors, counted by hand
    assert result.record["test"]["original"] == pytest.approx(_hand_accuracy(model, test_set))
    assert result.accuracy == pytest.approx(_hand_accuracy(result.model, test_set))
    assert result.record["settings"]["dataset"]["sizes"] == {"train": 1080, "val": 120, "test": 400}
    assert type(result.model[2]).__name__ != "Conv2d" and type(result.model[6]).__name__ != "Linear"


def test_a_dataloader_trains_like_its_dataset(tensors):
    train_set, val_set, _ = tensors
    runs = []
    for given in (train_set, DataLoader(train_set, batch_size=17, shuffle=True)):
        model = _plain_net()
        train(model, given, None, TrainConfig(epochs=1, batch_size=64, max_batches=5), log=None)
        runs.append(model)
    for a, b in zip(runs[0].parameters(), runs[1].parameters(), strict=True):
        assert torch.equal(a, b)
    assert evaluate(runs[0], DataLoader(val_set, batch_size=33))["accuracy"] == pytest.approx(
        _hand_accuracy(runs[0], val_set))


def test_one_dataset_gets_a_carved_val_split_and_no_test(tensors):
    train_set = tensors[0]
    notes = []
    result = finetune(_plain_net(), train_set, plan={"rules": [{"layers": "6", "method": "svd", "rank": 8}]},
                      epochs=0.2, batch_size=64, log=notes.append)
    sizes = result.record["settings"]["dataset"]["sizes"]
    assert sizes == {"train": 1080 - 108, "val": 108, "test": None}  # 10 % of the 1,080 carved off
    assert result.accuracy is None and any("no test split" in n for n in notes)


def test_user_data_needs_a_builder_to_save(tensors, tmp_path):
    with pytest.raises(FinetuneError, match="no spec"):
        finetune(_plain_net(), tensors[0], plan={"rules": [{"layers": "6", "method": "svd", "rank": 8}]},
                 out=tmp_path / "out", log=None)
    assert not (tmp_path / "out").exists()


def test_a_loader_with_its_own_collation_is_read_into_memory(tensors):
    ds = tensors[2]

    def collate(samples):
        x, y = zip(*samples, strict=True)
        return torch.stack(x) * 2.0, torch.tensor(y)

    got = user.as_dataset(DataLoader(ds, batch_size=50, collate_fn=collate))
    x, y = got.dataset.tensors
    assert torch.equal(x, ds.tensors[0] * 2.0) and torch.equal(y, ds.tensors[1])
    assert got.input_shape == tuple(ds.tensors[0].shape[1:]) and got.batch_size == 50


@pytest.mark.parametrize(("bad", "message"), [
    (TensorDataset(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)), "float tensor"),
    (TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4)), "label must be an integer"),
    (TensorDataset(torch.full((4, 1, 8, 8), float("nan")), torch.zeros(4, dtype=torch.long)), "NaN"),
    (TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), "empty"),
    ([1, 2, 3], "expected a dataset name"),
])
def test_bad_user_data_is_one_line(bad, message):
    with pytest.raises(DataError, match=message) as err:
        user.splits({"train": bad} if not isinstance(bad, list) else bad)
    assert "\n" not in str(err.value)


def test_splits_must_share_the_image_shape(tensors):
    other = TensorDataset(torch.zeros(8, 1, 14, 14), torch.zeros(8, dtype=torch.long))
    with pytest.raises(DataError, match="val data: images are"):
        user.splits((tensors[0], other))
    with pytest.raises(DataError, match="unknown: valid"):
        user.splits({"train": tensors[0], "valid": tensors[1]})


def test_fingerprint_tells_datasets_apart(tensors):
    a = user.splits((tensors[0], tensors[1]))[3]["fingerprint"]
    b = user.splits((tensors[0], tensors[2]))[3]["fingerprint"]
    assert a != b and a == user.splits((tensors[0], tensors[1]))[3]["fingerprint"]


def test_evaluate_model_records_user_data_under_its_name(base_dir, tensors, tmp_path):
    import json
    import shutil

    from tensorslim import modeldir
    from tensorslim.workflows import evaluate_model

    path = tmp_path / "m"
    shutil.copytree(base_dir, path)
    test_set = tensors[2]
    result = evaluate_model(path, DataLoader(test_set, batch_size=64), name="mine")
    expected = _hand_accuracy(modeldir.load(path), test_set)
    assert result["accuracy"] == pytest.approx(expected)
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["evaluations"]["mine"]["test"] == pytest.approx(expected, abs=1e-4)
    assert "test" not in metrics.get("accuracy", {})  # the model's own-dataset accuracy is not replaced
    from tensorslim.errors import TensorSlimError

    with pytest.raises(TensorSlimError, match="not a built-in"):
        evaluate_model(path, test_set, name="digits")
    small = TensorDataset(torch.zeros(4, 1, 14, 14), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TensorSlimError, match="model takes 1,28,28"):
        evaluate_model(path, small)
