"""The model directory: exact round trips, and one-line refusals of bad files without running code."""

import json
import pickle

import pytest
import torch

import tensorslim
from tensorslim import modeldir
from tensorslim.errors import ModelError


def _model():
    torch.manual_seed(0)
    return modeldir.build({"builder": "lenet5", "kwargs": {"in_channels": 1, "num_classes": 10}}, (1, 28, 28))


def test_round_trip_is_exact(tmp_path):
    model = _model().eval()
    tensorslim.save(model, tmp_path / "m", dataset="digits", metrics={"accuracy": {"test": 91.5}})
    again = tensorslim.load(tmp_path / "m")
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), again(x))
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["spec"]["builder"] == "lenet5" and meta["input_shape"] == [1, 28, 28]
    assert meta["dataset"] == "digits"
    assert modeldir.read_metrics(tmp_path / "m")["accuracy"]["test"] == 91.5


def test_save_replaces_atomically_and_leaves_no_temporaries(tmp_path):
    model = _model()
    tensorslim.save(model, tmp_path / "m")
    tensorslim.save(model, tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["metrics.json", "model.json",
                                                                  "weights.safetensors"]


def test_save_without_spec_is_refused():
    with pytest.raises(ModelError, match="no build spec"):
        tensorslim.save(torch.nn.Linear(2, 2), "unused")


def test_corrupt_safetensors_is_one_line_error(tmp_path):
    tensorslim.save(_model(), tmp_path / "m")
    (tmp_path / "m" / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="weights.safetensors: not a valid safetensors file") as info:
        tensorslim.load(tmp_path / "m")
    assert "\n" not in str(info.value)


def test_weights_of_another_model_are_refused(tmp_path):
    tensorslim.save(_model(), tmp_path / "m")
    other = modeldir.build({"builder": "lenet5", "kwargs": {"in_channels": 1, "num_classes": 7}}, (1, 28, 28))
    with pytest.raises(ModelError, match="has shape"):
        modeldir.apply_state(other, modeldir.load_weights(tmp_path / "m" / "weights.safetensors"), "w")


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelError, match="no such model directory"):
        tensorslim.load(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        tensorslim.load(tmp_path / "d")


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_pickle_that_runs_code_is_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"w": _Exploit()}, f)
    with pytest.raises(ModelError, match="weights-only"):
        modeldir.load_weights(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_plain_state_dict_pt_is_read_weights_only(tmp_path):
    model = _model()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    state = modeldir.load_weights(tmp_path / "w.pt")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
