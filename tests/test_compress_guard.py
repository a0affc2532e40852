"""`tensorslim compress` measures each compressed layer's output error on real data, warns on large ones, records
them, and `--dry-run` predicts costs and errors without writing anything (issue 17)."""

import json

import pytest
import torch
from torch import nn

from tensorslim import data, modeldir, models, surgery
from tensorslim.workflows import _calibration_batch
from test_cli import run  # (exit code, stdout, stderr) of the CLI run in-process


@pytest.fixture(scope="module")
def lenet_dir(tmp_path_factory):
    """An (untrained) lenet5 directory whose dataset is digits, which is always available."""
    torch.manual_seed(0)
    model = models.build("lenet5")
    out = tmp_path_factory.mktemp("guard") / "lenet"
    modeldir.save(model, out, spec={"builder": "lenet5", "kwargs": {}}, input_shape=(1, 28, 28), dataset="digits")
    return out


def _by_hand(original, compressed, x, name):
    """The relative error of one layer, computed independently: capture the activation that reaches the dense
    layer, then apply the dense weight with F.linear / F.conv2d and the replacement module to that same input."""
    captured = []
    dense = original.get_submodule(name)
    handle = dense.register_forward_hook(lambda mod, args, out: captured.append(args[0].detach().clone()))
    with torch.no_grad():
        original.eval()(x)
    handle.remove()
    a = torch.cat(captured)
    with torch.no_grad():
        if isinstance(dense, torch.nn.Linear):
            y = torch.nn.functional.linear(a, dense.weight, dense.bias)
        else:
            y = torch.nn.functional.conv2d(a, dense.weight, dense.bias, dense.stride, dense.padding)
        y_c = compressed.eval().get_submodule(name)(a)
    return (torch.linalg.vector_norm((y_c - y).double()) / torch.linalg.vector_norm(y.double())).item()


def test_output_errors_match_a_hand_computation(lenet_dir):
    model = modeldir.load(lenet_dir)
    plan = {"rules": [{"layers": "classifier.fc1", "method": "svd", "rank": 2},
                      {"layers": "features.conv2", "method": "tucker2", "rank": [2, 2]}]}
    compressed = surgery.compress(model, plan, (1, 28, 28))
    x = _calibration_batch("digits", None, 100, (1, 28, 28), print)
    assert x.shape == (100, 1, 28, 28)
    errors = surgery.output_errors(model, compressed, x, ["classifier.fc1", "features.conv2"], batch_size=32)
    for name in ("classifier.fc1", "features.conv2"):
        assert errors[name] == pytest.approx(_by_hand(model, compressed, x, name), rel=1e-4)
        assert 0 < errors[name] < 2
    # the same layer, uncompressed: zero error
    assert surgery.output_errors(model, model, x, ["classifier.fc2"]) == {"classifier.fc2": 0.0}


def test_output_disagreements_match_a_copy_with_one_layer_swapped():
    import copy

    torch.manual_seed(0)  # a random MLP on random inputs: its predictions spread over the classes
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))
    plan = {"rules": [{"layers": "1", "method": "svd", "rank": 1}, {"layers": "3", "method": "svd", "rank": 8}]}
    compressed = surgery.compress(model, plan, (1, 8, 8))
    x = torch.randn(300, 1, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = surgery.output_disagreements(model, compressed, x, ["1", "3"], batch_size=64)
    with torch.inference_mode():
        ref = model.eval()(x).argmax(1)
        assert len(ref.unique()) >= 3
        for name in ("1", "3"):  # by hand: a deep copy with that one layer replaced
            one = copy.deepcopy(model)
            one.set_submodule(name, copy.deepcopy(compressed.get_submodule(name)))
            assert got[name] == (one.eval()(x).argmax(1) != ref).double().mean().item()
    assert 0 < got["3"] < got["1"] < 1  # rank 1 of 48 changes more predictions than rank 8 of 32
    # the original is put back: its own Linear modules, the same weights
    assert all(type(model.get_submodule(n)) is nn.Linear for n in ("1", "3"))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert surgery.output_disagreements(model, model, x, ["5"]) == {"5": 0.0}


def test_compress_warns_on_large_output_error_and_records_it(lenet_dir, tmp_path, capsys):
    out = tmp_path / "small"
    code, stdout, err = run(["compress", str(lenet_dir), "--method", "svd", "--rank", "1",
                             "--layers", "classifier.fc*", "--no-evaluate", "--out", str(out)], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    errors = metrics["output_error"]
    assert set(errors) == {"classifier.fc1", "classifier.fc2", "classifier.fc3"}
    assert metrics["calibration"] == {"dataset": "digits", "split": "train", "images": 256}
    # independent check of one layer on the same 256 calibration images
    model, small = modeldir.load(lenet_dir), modeldir.load(out)
    x = next(iter(data.batches(data.load("digits", "train", augment=False), 256, False, 0)))[0]
    assert errors["classifier.fc1"] == pytest.approx(_by_hand(model, small, x, "classifier.fc1"), rel=1e-4)
    bad = [n for n, e in errors.items() if e > 0.3]
    assert bad, errors  # rank 1 of a random 400→120 layer loses most of its output
    lines = [line for line in err.splitlines() if line.startswith("warning: layer")]
    assert len(lines) == len(bad)
    for name in bad:
        assert (f"warning: layer {name}: relative output error {errors[name]:.2f} on real data (> 0.3); "
                f"expect a large accuracy drop before fine-tuning") in lines
    code, _, err = run(["compress", str(lenet_dir), "--method", "svd", "--rank", "1", "--layers", "classifier.fc*",
                        "--no-evaluate", "--warn-error", "100", "--out", str(tmp_path / "quiet")], capsys)
    assert code == 0 and "warning:" not in err


def test_dry_run_predicts_costs_and_errors_and_writes_nothing(lenet_dir, tmp_path, capsys):
    out = tmp_path / "never"
    argv = ["compress", str(lenet_dir), "--method", "svd", "--rank", "1", "--layers", "classifier.fc*"]
    code, stdout, err = run([*argv, "--dry-run", "--out", str(out)], capsys)
    assert code == 0, err
    assert not out.exists()
    code2, _, _ = run([*argv, "--no-evaluate", "--out", str(tmp_path / "real")], capsys)
    assert code2 == 0
    real = json.loads((tmp_path / "real" / "metrics.json").read_text())
    before = json.loads((tmp_path / "real" / "metrics.json").read_text())["original"]
    assert f"predicted params {before['params']:,} → {real['params']:,}" in stdout
    assert f"MACs {before['macs']:,} → {real['macs']:,}" in stdout
    for name, e in real["output_error"].items():
        row = next(line for line in stdout.splitlines() if line.startswith(name + " "))
        assert row.split()[-1] == f"{e:.4f}"
    assert "warning: layer" in err and "dry run: nothing written" in stdout
    # without --out it is fine too
    code, stdout, _ = run([*argv, "--dry-run"], capsys)
    assert code == 0 and "predicted params" in stdout


def test_predict_matches_compress_without_decomposing(lenet_dir):
    model = modeldir.load(lenet_dir)
    plan = {"rules": [{"layers": "*", "method": "svd", "ratio": 0.3}]}
    predicted = surgery.predict(model, plan, (1, 28, 28))
    _, report = surgery.compress_with_report(model, plan, (1, 28, 28))
    keys = ("name", "rank", "params_before", "params_after", "macs_before", "macs_after")
    assert [{k: e[k] for k in keys} for e in predicted.layers] == [{k: e[k] for k in keys} for e in report.layers]
    assert [s["name"] for s in predicted.skipped] == [s["name"] for s in report.skipped]


@pytest.mark.parametrize("extra, message", [
    (["--warn-error", "-1", "--out", "OUT"], "--warn-error -1.0: expected a number >= 0"),
    ([], "compress needs --out DIR (or --dry-run)"),
])
def test_bad_input_is_one_line_and_writes_nothing(lenet_dir, tmp_path, capsys, extra, message):
    extra = [str(tmp_path / "o") if e == "OUT" else e for e in extra]
    code, _, err = run(["compress", str(lenet_dir), "--method", "svd", "--rank", "1", *extra], capsys)
    assert code == 2 and err.strip() == f"error: {message}"
    assert not (tmp_path / "o").exists()
