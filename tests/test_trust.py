"""Nothing named in a model directory runs code unless the user trusts it (tensorslim.trust).

Every entry point that reads a model directory is tried with every hostile builder form. Each payload would
write a marker file if it ran; the tests assert the refusal (exit 2, one ``error:`` line naming the builder,
the file and ``--trust-code``), that the marker does not exist, and that no output was written. With the opt-in,
a legitimate user factory still loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tensorslim
from tensorslim import modeldir
from tensorslim.errors import ModelError
from tensorslim.trust import UntrustedCodeError, trusted_code

MARKER = "pwned.marker"

EVIL_PY = f"""
from pathlib import Path
Path({MARKER!r}).write_text("module imported")

def f(**kwargs):
    Path({MARKER!r}).write_text("factory called")
    import torch
    return torch.nn.Linear(2, 2)
"""


FORMS = ["module:function", "subprocess", "popen", "file.py:function", "absolute file", "package import",
         "builtins eval", "builtins exec", "builtins __import__", "dotted attribute", "dotted no colon",
         "path with ..", "torchvision lookalike"]


def hostile_specs(root: Path) -> dict[str, dict]:
    """Builder forms that would run the payload (each writes MARKER in the working directory)."""
    (root / "evil.py").write_text(EVIL_PY)
    (root / "evilpkg").mkdir(exist_ok=True)
    (root / "evilpkg" / "__init__.py").write_text(EVIL_PY)
    (root / "sub").mkdir(exist_ok=True)
    touch = f"touch {MARKER}"
    return {
        "module:function": {"builder": "os:system", "kwargs": {"command": touch}},
        "subprocess": {"builder": "subprocess:getoutput", "kwargs": {"cmd": touch}},
        "popen": {"builder": "os:popen", "kwargs": {"cmd": touch}},
        "file.py:function": {"builder": "evil.py:f", "kwargs": {}},
        "absolute file": {"builder": f"{root / 'evil.py'}:f", "kwargs": {}},
        "package import": {"builder": "evilpkg:f", "kwargs": {}},
        "builtins eval": {"builder": "builtins:eval",
                          "kwargs": {"source": f"open({MARKER!r}, 'w').write('eval')"}},
        "builtins exec": {"builder": "builtins:exec",
                          "kwargs": {"source": f"open({MARKER!r}, 'w').write('exec')"}},
        "builtins __import__": {"builder": "builtins:__import__", "kwargs": {"name": "evilpkg"}},
        "dotted attribute": {"builder": "tensorslim.models.registry:os.system", "kwargs": {"command": touch}},
        "dotted no colon": {"builder": "os.system", "kwargs": {"command": touch}},
        "path with ..": {"builder": "sub/../evil.py:f", "kwargs": {}},
        "torchvision lookalike": {"builder": "torchvision.models:__builtins__", "kwargs": {}},
    }


def write_hostile_dir(base: Path, spec: dict) -> Path:
    """A valid lenet5 model directory whose model.json names ``spec`` instead."""
    torch.manual_seed(0)
    model = modeldir.build({"builder": "lenet5", "kwargs": {}}, (1, 28, 28))
    path = base / "model"
    modeldir.save(model, path, dataset="synthetic")
    meta = json.loads((path / "model.json").read_text())
    meta["spec"] = spec
    (path / "model.json").write_text(json.dumps(meta))
    return path


def entry_points(d: Path, out: Path) -> dict[str, list[str]]:
    return {
        "inspect": ["inspect", str(d)],
        "evaluate": ["evaluate", str(d), "--data", "synthetic"],
        "export": ["export", str(d), "--out", str(out / "m.onnx")],
        "bench": ["bench", str(d), "--repeats", "1", "--warmup", "0"],
        "report": ["report", str(d), "--out", str(out / "report")],
        "compress": ["compress", str(d), "--method", "svd", "--rank", "2", "--out", str(out / "c")],
        "finetune": ["finetune", str(d), "--data", "synthetic", "--method", "svd", "--rank", "2",
                     "--out", str(out / "f")],
        "explore": ["explore", str(d), "--data", "synthetic", "--out", str(out / "e")],
    }


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    from tensorslim.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
        raise SystemExit(0)
    return info.value.code, capsys.readouterr().err


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # so that 'evilpkg' would be importable if anything tried
    return tmp_path


def test_the_forms_are_all_tried(tmp_path):
    assert sorted(hostile_specs(tmp_path)) == sorted(FORMS)


@pytest.mark.parametrize("form", FORMS)
def test_every_entry_point_refuses_every_hostile_builder(form, workdir, capsys):
    spec = hostile_specs(workdir)[form]
    d = write_hostile_dir(workdir, spec)
    out = workdir / "out"
    out.mkdir()
    for name, argv in entry_points(d, out).items():
        code, err = run_cli(argv, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (name, form, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, form, err)
        assert "Traceback" not in err
        assert repr(spec["builder"]) in lines[0] and "model.json" in lines[0], (name, lines[0])
        if form not in ("dotted no colon",):  # a name without ':' is looked up as a built-in and unknown
            assert "--trust-code" in lines[0], (name, lines[0])
        assert not (workdir / MARKER).exists(), f"{name} ran the payload of {form}"
        assert sorted(p.name for p in out.iterdir()) == [], f"{name} left output behind"
    assert not (workdir / MARKER).exists()


@pytest.mark.parametrize("form", ["module:function", "file.py:function", "builtins exec", "dotted attribute"])
def test_python_load_refuses_hostile_builders(form, workdir):
    d = write_hostile_dir(workdir, hostile_specs(workdir)[form])
    with pytest.raises(UntrustedCodeError, match="trust_code=True"):
        tensorslim.load(d)
    with pytest.raises(UntrustedCodeError):
        modeldir.read_meta(d)
    assert not (workdir / MARKER).exists()


def test_refusal_in_a_real_process_writes_nothing(workdir):
    """The installed command, end to end: one line, exit 2, no marker."""
    d = write_hostile_dir(workdir, hostile_specs(workdir)["file.py:function"])
    exe = Path(sys.executable).with_name("tensorslim")
    proc = subprocess.run([str(exe), "inspect", str(d)], capture_output=True, text=True, cwd=workdir,
                          env={**os.environ, "PYTHONPATH": str(workdir)}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "--trust-code" in proc.stderr
    assert not (workdir / MARKER).exists()


USER_PY = """
import torch
from torch import nn

def small(in_channels=1, num_classes=10):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 28 * 28, num_classes))
"""


def test_trusted_user_factory_still_loads(workdir, capsys):
    (workdir / "usermodel.py").write_text(USER_PY)
    builder = f"{workdir / 'usermodel.py'}:small"
    torch.manual_seed(0)
    model = modeldir.build({"builder": builder, "kwargs": {"num_classes": 3}}, (1, 28, 28))  # typed by the user
    modeldir.save(model, workdir / "m")
    meta = json.loads((workdir / "m" / "model.json").read_text())
    assert meta["trust_code"] is True  # the directory records that it needs trusted code

    with pytest.raises(UntrustedCodeError):
        tensorslim.load(workdir / "m")
    again = tensorslim.load(workdir / "m", trust_code=True)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(again(x), model.eval()(x))
    with trusted_code():
        assert torch.equal(tensorslim.load(workdir / "m")(x), model(x))
    with pytest.raises(UntrustedCodeError):  # the context does not outlive its block
        tensorslim.load(workdir / "m")

    code, err = run_cli(["inspect", str(workdir / "m")], capsys)
    assert code == 2 and "--trust-code" in err
    code, _ = run_cli(["inspect", str(workdir / "m"), "--trust-code"], capsys)
    assert code == 0
    code, err = run_cli(["inspect", str(workdir / "m")], capsys)  # the next command is untrusted again
    assert code == 2, err


def test_a_factory_typed_on_the_command_line_stays_allowed(workdir, capsys):
    (workdir / "usermodel.py").write_text(USER_PY)
    code, err = run_cli(["inspect", "usermodel.py:small", "--input-shape", "1,28,28"], capsys)
    assert code == 0, err


def test_builtin_models_need_no_trust_and_record_none(workdir):
    model = tensorslim.models.build("resnet20", num_classes=10)
    tensorslim.save(model, workdir / "r20")
    meta = json.loads((workdir / "r20" / "model.json").read_text())
    assert meta["trust_code"] is False and meta["spec"]["builder"] == "resnet20"
    assert isinstance(tensorslim.load(workdir / "r20"), torch.nn.Module)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": 10, "bogus": 1}, "takes no argument 'bogus'"),
    ({"num_classes": 10, "widths": [16, 32, 64], "norm": {"__class__": "os.system"}}, "takes no argument 'norm'"),
])
def test_builtin_kwargs_are_checked_against_the_signature_before_the_call(kwargs, message, workdir):
    d = write_hostile_dir(workdir, {"builder": "convnet", "kwargs": kwargs})
    with pytest.raises(ModelError, match=message):
        tensorslim.load(d)
