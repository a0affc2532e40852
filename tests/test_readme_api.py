"""README.md's Python section runs as written, and every built-in model saves, loads and exports.

The README blocks are executed in order in one namespace, from a scratch folder holding the repository's
``examples/``. Only sizes are reduced: ``epochs=20`` and ``epochs=3`` become fractions of an epoch, and
Fashion-MNIST becomes scikit-learn's digits (always installed, 1,797 images).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import tensorslim
from tensorslim import models
from tensorslim.export import export_onnx

ROOT = Path(__file__).resolve().parents[1]
REDUCE = {"epochs=20": "epochs=1", "epochs=3": "epochs=0.5", '"fashion-mnist"': '"digits"'}


def python_blocks(readme: Path) -> list[str]:
    text = readme.read_text()
    section = text[text.index("## Python API"):]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_section_runs_as_written(tmp_path, monkeypatch):
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) >= 2
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {}
    for block in blocks:
        for old, new in REDUCE.items():
            block = block.replace(old, new)
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the project's own README
    # what the blocks claim, checked independently
    assert (tmp_path / "runs" / "small" / "weights.safetensors").is_file()
    assert (tmp_path / "small.onnx").is_file() and (tmp_path / "r20.onnx").is_file()
    assert namespace["result"].out.exists()
    x = torch.randn(2, 1, 28, 28)
    again = tensorslim.load(tmp_path / "runs" / "mine", trust_code=True)
    assert torch.equal(again(x), namespace["mine"](x))
    with pytest.raises(tensorslim.TensorSlimError, match="trust"):
        tensorslim.load(tmp_path / "runs" / "mine")


@pytest.mark.parametrize("name", models.names())
def test_every_builtin_model_saves_loads_and_exports(name, tmp_path):
    torch.manual_seed(0)
    kwargs = {"width_mult": 0.25} if name == "mobilenetv2" else {}
    model = models.build(name, num_classes=10, **kwargs).eval()
    tensorslim.save(model, tmp_path / name)
    again = tensorslim.load(tmp_path / name)
    shape = models.info(name).input_shape
    x = torch.randn(2, *shape)
    assert torch.equal(again(x), model(x))
    result = export_onnx(again, tmp_path / f"{name}.onnx")  # the input shape comes from the loaded model
    assert result.max_rel_err < 1e-4
