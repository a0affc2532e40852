"""The command line: the happy path end to end, and bad input as one line, exit 2, nothing written."""

import json

import pytest

from tensorslim.cli import main


def run(argv, capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_every_builtin(capsys):
    code, out, _ = run(["models", "--json"], capsys)
    assert code == 0
    names = {r["name"] for r in json.loads(out)}
    assert {"lenet5", "convnet", "resnet20", "resnet32", "resnet56", "vgg16", "mobilenetv2"} <= names


def test_data_lists_digits_as_found(capsys):
    code, out, _ = run(["data"], capsys)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("digits"))
    assert " yes " in line


def test_train_evaluate_inspect(tmp_path, capsys):
    out_dir = tmp_path / "m"
    code, out, err = run(["train", "lenet5", "--data", "synthetic", "--epochs", "1", "--optimizer", "adamw",
                          "--out", str(out_dir)], capsys)
    assert code == 0, err
    assert "test accuracy" in out
    code, out, _ = run(["evaluate", str(out_dir)], capsys)
    assert code == 0 and "synthetic test: accuracy" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"]["test"] <= 100 and len(metrics["history"]) == 1
    code, out, _ = run(["inspect", str(out_dir), "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["total"]["params"] == 61706  # lenet5 at 1x28x28, 10 classes: hand count


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "nosuchnet", "--data", "synthetic", "--epochs", "1"], "nosuchnet"),
        (["train", "lenet5", "--data", "nosuchdata", "--epochs", "1"], "nosuchdata"),
        (["train", "lenet5", "--data", "cifar10", "--epochs", "1", "--data-dir", "EMPTY"], "cifar10"),
        (["train", "resnet20", "--data", "synthetic", "--epochs", "1", "--model-kwargs", "{bad"], "--model-kwargs"),
    ],
)
def test_bad_training_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.delenv("TENSORSLIM_DATA", raising=False)
    argv = [str(tmp_path) if a == "EMPTY" else a for a in argv]
    code, _, err = run([*argv, "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_inspect_bad_shape_is_one_line(capsys):
    code, _, err = run(["inspect", "lenet5", "--input-shape", "1,5,5"], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_inspect_user_module_imagenet_vgg16(capsys):
    """A user's ImageNet VGG-16 (a factory in a module): 138,357,544 params, MACs as torch counts them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    code, out, err = run(["inspect", "examples.vgg16_imagenet:vgg16", "--input-shape", "3,224,224", "--json"],
                         capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["total"]["params"] == 138_357_544
    from examples.vgg16_imagenet import vgg16

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        vgg16().eval()(torch.zeros(1, 3, 224, 224))
    assert report["total"]["macs"] * 2 == counter.get_total_flops()


def test_demo_end_to_end_on_digits(tmp_path, capsys):
    """The default job on a small real dataset: every stage runs and its outputs agree with each other."""
    out_dir = tmp_path / "demo"
    code, out, err = run(["demo", "--data", "digits", "--model", "lenet5", "--epochs", "1", "--budget", "macs=0.5",
                          "--finetune-epochs", "0.5", "--out", str(out_dir)], capsys)
    assert code == 0, err
    summary = json.loads((out_dir / "demo.json").read_text())
    base, small = summary["rows"]
    # the table's numbers are the model directories' own: accuracy from metrics.json, cost from the profile
    for row, name in ((base, "lenet5-baseline"), (small, "lenet5-compressed")):
        metrics = json.loads((out_dir / name / "metrics.json").read_text())
        assert row["accuracy"] == metrics["accuracy"]["test"]
    assert small["macs"] <= 0.5 * base["macs"]
    assert small["params"] < base["params"]
    assert set(base["latency_ms"]) == set(small["latency_ms"]) == {"1", "32"}  # JSON keys: the batch sizes
    assert summary["bench"]["threads"] == 1
    assert (out_dir / "onnx" / "baseline.onnx").is_file() and (out_dir / "onnx" / "compressed.onnx").is_file()
    assert (out_dir / "report" / "index.html").is_file()
    assert "lenet5-compressed" in out and "report:" in out


def test_compress_target_rounds_the_rank_and_is_recorded(tmp_path, capsys):
    """SVD of lenet5's fc1 (400→120, bias) at 30 % of its 48,120 params: rank r costs 520 r + 120, so the rule
    allows r ≤ 27 (hand count); xnnpack-arm rounds to a multiple of 8 within that budget: 24."""
    import tensorslim

    base = tmp_path / "base"
    tensorslim.save(tensorslim.models.build("lenet5"), base, dataset="synthetic")
    for target, rank in (("none", 27), ("xnnpack-arm", 24)):
        out = tmp_path / target
        code, _, err = run(["compress", str(base), "--method", "svd", "--ratio", "0.3", "--layers", "classifier.fc1",
                            "--target", target, "--no-evaluate", "--out", str(out)], capsys)
        assert code == 0, err
        record = json.loads((out / "model.json").read_text())["compression"]
        assert record["plans"][-1]["target"] == target
        assert record["layers"][0]["config"]["rank"] == rank


def test_export_target_and_realise_are_written_into_the_onnx_file(tmp_path, capsys):
    """The file's own metadata_props, read with onnx: the target, its passes (x86 ORT pads, XNNPACK does not) and
    the CP layer's realisation."""
    import onnx

    import tensorslim

    base, cp = tmp_path / "base", tmp_path / "cp"
    tensorslim.save(tensorslim.models.build("lenet5"), base, dataset="synthetic")
    code, _, err = run(["compress", str(base), "--method", "cp", "--rank", "4", "--layers", "features.conv2",
                        "--no-evaluate", "--out", str(cp)], capsys)
    assert code == 0, err
    for target, realise, padded in (("xnnpack-x86", "cp3", False), ("ort-x86", "as_exported", True)):
        out = tmp_path / f"{target}.onnx"
        code, _, err = run(["export", str(cp), "--out", str(out), "--target", target, "--realise", realise,
                            "--data", "none"], capsys)
        assert code == 0, err
        meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert meta["tensorslim.target"] == target
        assert [p["name"] for p in json.loads(meta["tensorslim.passes"])] == (["pad_channels"] if padded else [])
        assert [r["form"] for r in json.loads(meta["tensorslim.realisations"]).values()] == [realise]
