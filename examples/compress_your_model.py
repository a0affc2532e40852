"""Your own model on your own data: train, compress, fine-tune with distillation, save, export, time.

The model is any ``nn.Module`` (here ``examples.small_cnn:small_cnn``), the data any ``torch.utils.data.Dataset``
or ``DataLoader`` of ``(image, label)`` pairs (here scikit-learn's digits, upsampled to 28×28, in a
``TensorDataset``). Run from the repository root:

    .venv/bin/python examples/compress_your_model.py --epochs 6 --out runs/example

With torchvision installed, ``--torchvision NAME`` (e.g. ``resnet18``, ``mobilenet_v2``) takes a torchvision
model instead, built untrained (``weights=None``: nothing downloads) for the digits as 3×32×32 images, with a
plan made from its own layer names (Tucker-2 on its k×k convs, SVD on its Linear layers).

It prints a before/after table and writes ``OUT/small`` (a model directory naming the factory, so loading it
needs ``trust_code=True``) and ``OUT/small.onnx`` (verified in ONNX Runtime on real images).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `examples` importable from anywhere

import tensorslim  # noqa: E402
from tensorslim import modeldir, train  # noqa: E402
from tensorslim.export import benchmark, export_onnx  # noqa: E402
from tensorslim.finetune import finetune  # noqa: E402

BUILDER = "examples.small_cnn:small_cnn"


def digits(size: int = 28, channels: int = 1) -> tuple[TensorDataset, TensorDataset]:
    """Your data: any Dataset of (C×H×W float tensor, int label). Here digits 8×8 → ``channels``×size×size (the
    grey image repeated), 80/20 split."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).repeat(1, channels, 1, 1)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=g)
    cut = int(0.8 * len(y))
    return TensorDataset(x[order[:cut]], y[order[:cut]]), TensorDataset(x[order[cut:]], y[order[cut:]])


def plan_for(model: torch.nn.Module) -> dict:
    """A plan by layer name: Tucker-2 (40 % of the MACs) on each k×k conv with k > 1, SVD (half the params)
    on each Linear; 1×1 and grouped convs stay dense."""
    rules = []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d) and m.groups == 1 and max(m.kernel_size) > 1 and m.in_channels > 3:
            rules.append({"layers": name, "method": "tucker2", "macs_ratio": 0.4})
        elif isinstance(m, torch.nn.Linear) and min(m.in_features, m.out_features) > 8:
            rules.append({"layers": name, "method": "svd", "ratio": 0.5})
    return {"rules": rules}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (fine-tuning gets half)")
    parser.add_argument("--out", type=Path, default=Path("runs/example"))
    parser.add_argument("--torchvision", metavar="NAME", help="a torchvision model (untrained) instead of small_cnn")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.torchvision:
        try:
            import torchvision.models as tvm
        except ImportError:
            parser.exit(2, "error: --torchvision needs torchvision (pip install torchvision)\n")
        if args.torchvision not in tvm.list_models():
            parser.exit(2, f"error: {args.torchvision!r} is not a torchvision model name\n")
        spec = {"builder": f"torchvision.models:{args.torchvision}", "kwargs": {"num_classes": 10, "weights": None}}
        train_set, test_set = digits(32, 3)
    else:
        spec = {"builder": BUILDER, "kwargs": {"num_classes": 10, "width": 16}}
        train_set, test_set = digits()
    shape = tuple(train_set[0][0].shape)

    # 1. your model, built through tensorslim so that the directory it is saved to names its factory
    model = modeldir.build(spec, shape)
    train.train(model, train_set, None, train.TrainConfig(epochs=args.epochs, batch_size=64), log=None)
    dense_acc = train.evaluate(model, test_set)["accuracy"]

    # 2. compress and fine-tune on your DataLoaders, distilling from the dense model: Tucker-2 on the second
    #    conv, SVD on the classifier (layer names are your model's own: `tensorslim inspect
    #    examples/small_cnn.py:small_cnn` lists them). No val loader given: 10 % of train is carved off.
    plan = plan_for(model) if args.torchvision else {"rules": [{"layers": "4", "method": "tucker2", "macs_ratio": 0.4},
                                                               {"layers": "9", "method": "svd", "rank": 6}]}
    loaders = {"train": DataLoader(train_set, batch_size=64, shuffle=True), "test": DataLoader(test_set, 256)}
    tuned = finetune(model, loaders, plan=plan, epochs=max(1, args.epochs // 2), distill=True, batch_size=64,
                     log=None)
    small, zero_shot, small_acc = tuned.model, tuned.record["test"]["before"], tuned.accuracy

    # 4. save (model.json records that it needs trusted code), export verified on real images, time both
    args.out.mkdir(parents=True, exist_ok=True)
    tensorslim.save(small, args.out / "small", metrics={"accuracy": {"test": round(small_acc, 4)}})
    real = torch.stack([test_set[i][0] for i in range(16)])
    export_onnx(small, args.out / "small.onnx", shape, inputs=real)
    export_onnx(model, args.out / "dense.onnx", shape, inputs=real)
    timing = benchmark(str(args.out / "small.onnx"), against=str(args.out / "dense.onnx"), input_shape=shape,
                       batch_sizes=(1,), threads=1, repeats=30)
    speedup = timing.to_dict()["comparison"][0]["speedup"]

    p0, p1 = (tensorslim.profile(m, shape).total for m in (model, small))
    print(f"{'model':<8} {'test acc':>9} {'params':>9} {'MACs':>11}")
    print(f"{'dense':<8} {dense_acc:>8.2f}% {p0.params:>9,} {p0.macs:>11,}")
    print(f"{'small':<8} {small_acc:>8.2f}% {p1.params:>9,} {p1.macs:>11,}   (before fine-tuning {zero_shot:.2f}%)")
    print(f"ORT batch 1, 1 thread, alternating: the small model is {speedup:.2f}× as fast as the dense one "
          f"(t_dense / t_small); files in {args.out}")
    return {"dense_acc": dense_acc, "small_acc": small_acc, "zero_shot": zero_shot, "params": [p0.params, p1.params],
            "macs": [p0.macs, p1.macs], "layers": [r["layers"] for r in tuned.record["plan"]["rules"]]}


if __name__ == "__main__":
    main()
