"""The ``finetune`` click command: plans from options or files, budgets, one-line errors."""

from __future__ import annotations

import json

import pytest

from tensorslim import modeldir
from tensorslim.cli.finetune import finetune_cmd
from tensorslim.errors import TensorSlimError


def _run(args):
    return finetune_cmd.main(args=[str(a) for a in args], standalone_mode=False)


def test_plan_file_and_schedule(base_dir, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"rules": [{"layers": "classifier.fc*", "method": "svd", "ratio": 0.3}]}))
    out = tmp_path / "out"
    _run([base_dir, "--plan", plan, "--schedule", "iterative", "--epochs", "0.5", "--max-batches", "2",
          "--batch-size", "32", "--out", out])
    record = json.loads((out / "finetune.json").read_text())
    assert record["settings"]["schedule"] == "iterative"
    assert [s["layers"] for s in record["steps"]] == [["classifier.fc1"], ["classifier.fc2"], ["classifier.fc3"]]
    model = modeldir.load(out)
    assert type(model.classifier.fc1).__name__ == "SVDLinear"
    assert "test accuracy after fine-tuning" in capsys.readouterr().out


def test_method_options_build_the_same_plan_as_a_file(base_dir, tmp_path):
    out = tmp_path / "m"
    _run([base_dir, "--method", "tucker2", "--rank", "2,4", "--layers", "features.conv2", "--epochs", "0",
          "--out", out])
    record = json.loads((out / "finetune.json").read_text())
    assert record["plan"]["rules"] == [{"layers": "features.conv2", "method": "tucker2", "rank": [2, 4]}]


@pytest.mark.parametrize(("extra", "match"), [
    (["--plan", "p.json", "--method", "svd", "--rank", "3"], "exactly one of"),
    (["--rank", "3"], "exactly one of"),
    (["--method", "svd"], "exactly one of --rank"),
    (["--budget", "params=3"], "fraction kept"),
    (["--method", "svd", "--rank", "x"], "expected an integer"),
])
def test_bad_input_is_a_one_line_error(base_dir, tmp_path, extra, match):
    with pytest.raises(TensorSlimError, match=match):
        _run([base_dir, *extra, "--out", tmp_path / "o"])
    assert not (tmp_path / "o").exists()


def test_missing_model_directory(tmp_path):
    with pytest.raises(TensorSlimError, match="no such model directory"):
        _run([tmp_path / "nope", "--method", "svd", "--rank", "3", "--out", tmp_path / "o"])
