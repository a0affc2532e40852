from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tiny models: one thread is much faster on a shared machine

SYNTH = {"num_samples": 600, "num_test": 200, "num_classes": 4, "input_shape": (1, 8, 8), "noise": 0.2}
SPEC = {"builder": f"{Path(__file__).with_name('tiny_model.py')}:tiny", "kwargs": {"in_channels": 1, "num_classes": 4}}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A trained tiny model directory (synthetic 1×8×8 data, 4 classes)."""
    from tensorslim import data, modeldir
    from tensorslim.train import TrainConfig, train

    torch.manual_seed(0)
    model = modeldir.build(SPEC, (1, 8, 8))
    train(model, data.load("synthetic", "train", **SYNTH), None,
          TrainConfig(epochs=3, batch_size=32, lr=0.05), log=None)
    out = tmp_path_factory.mktemp("tiny") / "model"
    modeldir.save(model, out, dataset="synthetic")
    return out


@pytest.fixture(autouse=True, scope="module")
def trust_the_tiny_model():
    """The tiny model is a factory in a test file: loading its directory needs trusted code (tensorslim.trust)."""
    from tensorslim.trust import trusted_code

    with trusted_code():
        yield
