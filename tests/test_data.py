"""tensorslim.data: format-exact fixtures (idx, CIFAR pickles, Imagenette folders), broken variants, splits,
augmentation, normalisation, batching, lookup, and the real Fashion-MNIST when installed."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _datafixtures import (
    CLASS_COLOURS,
    SPRINGER,
    TENCH,
    UNKNOWN_CLASS,
    Eval,
    SystemCall,
    idx_bytes,
    make_cifar10,
    make_cifar100,
    make_idx_tree,
    make_imagenette,
    py2_pickle,
    py3_pickle,
    three_band_png,
    write_file,
)
from tensorslim import data
from tensorslim.data import _locate
from tensorslim.errors import DataError

FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_lookup(tmp_path, monkeypatch):
    """No $TENSORSLIM_DATA, ./data inside tmp_path, and an empty system location."""
    monkeypatch.delenv("TENSORSLIM_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_locate, "SYSTEM_ROOT", tmp_path / "system")


def assert_one_line_error(excinfo, *needles: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def expected_normalised(u8: np.ndarray, mean, std) -> torch.Tensor:
    """(x / 255 - mean) / std computed in float64, channel first."""
    x = torch.from_numpy(u8.astype(np.float64)) / 255
    c = x.shape[-3]
    return (x - torch.tensor(mean, dtype=torch.float64).view(c, 1, 1)) / torch.tensor(std, dtype=torch.float64).view(
        c, 1, 1
    )


# ---------------------------------------------------------------------------------------------- idx


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_and_splits(tmp_path, gz):
    written = make_idx_tree(tmp_path / "fashion-mnist", gz=gz)
    train = data.load("fashion-mnist", "train", tmp_path, val_fraction=0.2, seed=5)
    val = data.load("fashion-mnist", "val", tmp_path, val_fraction=0.2, seed=5)
    test = data.load("fashion-mnist", "test", tmp_path)

    # test split: every pixel and label exactly as written, in file order
    assert test.images.dtype == torch.uint8 and test.images.shape == (12, 1, 28, 28)
    assert np.array_equal(test.images[:, 0].numpy(), written["t10k-images-idx3-ubyte"])
    assert np.array_equal(test.labels.numpy(), written["t10k-labels-idx1-ubyte"])

    # train/val: disjoint, covering the official train set, sizes 40/10, data matching the source ids
    ids_train = train.images[:, 0, 0, 0].numpy()
    ids_val = val.images[:, 0, 0, 0].numpy()
    assert (len(ids_train), len(ids_val)) == (40, 10)
    assert not set(ids_train) & set(ids_val)
    assert sorted([*ids_train, *ids_val]) == list(range(50))
    for ds, ids in ((train, ids_train), (val, ids_val)):
        assert np.array_equal(ds.images[:, 0].numpy(), written["train-images-idx3-ubyte"][ids])
        assert np.array_equal(ds.labels.numpy(), written["train-labels-idx1-ubyte"][ids])

    assert train.name == "fashion-mnist" and val.split == "val" and test.split == "test"
    assert train.input_shape == (1, 28, 28) and train.num_classes == 10
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert train.augment is None  # augment=None: no augmentation for Fashion-MNIST


def test_val_split_is_deterministic_and_seeded(tmp_path):
    make_idx_tree(tmp_path / "mnist")

    def val_ids(seed):
        ds = data.load("mnist", "val", tmp_path, val_fraction=0.3, seed=seed)
        return ds.images[:, 0, 0, 0].tolist()

    assert val_ids(1) == val_ids(1)
    assert val_ids(1) != val_ids(2)
    assert len(val_ids(1)) == 15
    full = data.load("mnist", "train", tmp_path, val_fraction=0.0)
    assert len(full) == 50
    with pytest.raises(DataError, match="'val' split is empty"):
        data.load("mnist", "val", tmp_path, val_fraction=0.0)
    with pytest.raises(DataError, match="val_fraction"):
        data.load("mnist", "train", tmp_path, val_fraction=1.0)


def test_idx_normalisation_matches_formula(tmp_path):
    written = make_idx_tree(tmp_path / "fashion-mnist")
    test = data.load("fashion-mnist", "test", tmp_path)
    x, y = test[3]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28) and isinstance(y, int)
    want = expected_normalised(written["t10k-images-idx3-ubyte"][3][None], (0.2860,), (0.3530,))
    assert torch.allclose(x.double(), want, atol=1e-5)
    assert y == int(written["t10k-labels-idx1-ubyte"][3])


def test_idx_raw_preferred_and_dot_spelling(tmp_path):
    folder = tmp_path / "mnist"
    written = make_idx_tree(folder, gz=False)
    # the Kaggle spelling "t10k-images.idx3-ubyte" is accepted too
    (folder / "t10k-images-idx3-ubyte").rename(folder / "t10k-images.idx3-ubyte")
    test = data.load("mnist", "test", tmp_path)
    assert np.array_equal(test.images[:, 0].numpy(), written["t10k-images-idx3-ubyte"])


def _broken_idx_cases():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    good = idx_bytes(images)
    return {
        "magic": (idx_bytes(images, magic=bytes([0, 0, 8, 4])), "4 dimensions, expected 3"),
        "nonzero-magic": (idx_bytes(images, magic=bytes([1, 2, 8, 3])), "bad magic number 0x01020803"),
        "float-type": (idx_bytes(images, magic=bytes([0, 0, 0x0D, 3])), "element type 0x0d"),
        "truncated": (good[:-100], "size mismatch"),
        "trailing": (good + b"\0", "size mismatch"),
        "empty": (b"", "not an idx file"),
        "short-header": (good[:9], "truncated idx header"),
        "wrong-size": (idx_bytes(images[:, :27]), "images are 27x28"),
    }


@pytest.mark.parametrize("case", list(_broken_idx_cases()))
@pytest.mark.parametrize("gz", [True, False])
def test_idx_corrupt_image_file(tmp_path, case, gz):
    payload, needle = _broken_idx_cases()[case]
    folder = tmp_path / "fashion-mnist"
    write_file(folder / "train-images-idx3-ubyte", payload, gz)
    write_file(folder / "train-labels-idx1-ubyte", idx_bytes(np.zeros(5, np.uint8)), gz)
    with pytest.raises(DataError) as excinfo:
        data.load("fashion-mnist", "train", tmp_path)
    assert_one_line_error(excinfo, "train-images-idx3-ubyte", needle)


def test_idx_truncated_and_fake_gzip(tmp_path):
    folder = tmp_path / "fashion-mnist"
    written = make_idx_tree(folder, gz=True)
    compressed = gzip.compress(idx_bytes(written["t10k-images-idx3-ubyte"]))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError) as excinfo:
        data.load("fashion-mnist", "test", tmp_path)
    assert_one_line_error(excinfo, "t10k-images-idx3-ubyte.gz", "truncated or corrupt gzip")

    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(idx_bytes(written["t10k-images-idx3-ubyte"]))
    with pytest.raises(DataError) as excinfo:
        data.load("fashion-mnist", "test", tmp_path)
    assert_one_line_error(excinfo, "t10k-images-idx3-ubyte.gz", "corrupt gzip")


def test_idx_count_mismatch_and_label_range(tmp_path):
    folder = tmp_path / "mnist"
    make_idx_tree(folder, gz=False)
    write_file(folder / "train-labels-idx1-ubyte", idx_bytes(np.zeros(49, np.uint8)), gz=False)
    with pytest.raises(DataError) as excinfo:
        data.load("mnist", "train", tmp_path)
    assert_one_line_error(excinfo, "50 images", "has 49 labels")

    labels = np.zeros(50, np.uint8)
    labels[7] = 10
    write_file(folder / "train-labels-idx1-ubyte", idx_bytes(labels), gz=False)
    with pytest.raises(DataError) as excinfo:
        data.load("mnist", "val", tmp_path)
    assert_one_line_error(excinfo, "train-labels-idx1-ubyte", "label 10 at index 7", "0..9")

    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"no t10k-labels-idx1-ubyte\[\.gz\]"):
        data.load("mnist", "test", tmp_path)


# -------------------------------------------------------------------------------- lookup, available


def test_lookup_order_env_default_dir_and_missing(tmp_path, monkeypatch):
    # ./data/<name> is the default data_dir
    make_idx_tree(tmp_path / "data" / "mnist", n_train=20, seed=1)
    assert len(data.load("mnist", "train", val_fraction=0.0)) == 20
    # an explicit data_dir wins over ./data; <root>/<name> and <root> itself both work
    make_idx_tree(tmp_path / "explicit", n_train=30, seed=2)
    assert len(data.load("mnist", "train", tmp_path / "explicit", val_fraction=0.0)) == 30
    # $TENSORSLIM_DATA is searched after data_dir
    make_idx_tree(tmp_path / "env" / "fashion-mnist", n_train=25, seed=3)
    monkeypatch.setenv("TENSORSLIM_DATA", str(tmp_path / "env"))
    assert len(data.load("fashion-mnist", "train", tmp_path / "nowhere", val_fraction=0.0)) == 25
    assert len(data.load("mnist", "train", tmp_path / "explicit", val_fraction=0.0)) == 30
    # the system location comes last
    make_idx_tree(tmp_path / "system" / "fashion-mnist", n_train=35, seed=4)
    monkeypatch.delenv("TENSORSLIM_DATA")
    assert len(data.load("fashion-mnist", "train", tmp_path / "nowhere", val_fraction=0.0)) == 35

    with pytest.raises(DataError) as excinfo:
        data.load("cifar10", "train", tmp_path / "nowhere")
    assert_one_line_error(
        excinfo, "cifar10: not found", "cifar-10-batches-py/data_batch_1", str(tmp_path / "nowhere" / "cifar10"),
        "$TENSORSLIM_DATA unset", str(tmp_path / "system" / "cifar10"),
    )  # fmt: skip


def test_available_reports_found_and_missing(tmp_path):
    make_idx_tree(tmp_path / "mnist")
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    status = {s.name: s for s in data.available(tmp_path)}
    assert list(status) == list(data.names())
    assert status["mnist"].found and status["mnist"].location == str(tmp_path / "mnist")
    assert not status["cifar10"].found and "missing test_batch" in status["cifar10"].detail
    fashion = status["fashion-mnist"]
    assert not fashion.found and fashion.location is None
    assert fashion.detail.startswith("no train-images-idx3-ubyte[.gz] in ")
    assert "$TENSORSLIM_DATA unset" in fashion.detail and "system/fashion-mnist" in fashion.detail
    assert status["digits"].found and status["synthetic"].found


def test_unknown_name_split_and_option():
    with pytest.raises(DataError) as excinfo:
        data.load("imagenet")
    assert_one_line_error(excinfo, "unknown dataset 'imagenet'", "fashion-mnist", "cifar100", "synthetic")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        data.load("digits", "dev")
    with pytest.raises(DataError, match="unknown option"):
        data.load("digits", colour=True)
    with pytest.raises(DataError, match="unknown dataset"):
        data.info("nope")


def test_info_without_files():
    assert data.info("fashion-mnist").input_shape == (1, 28, 28)
    assert data.info("fashion_mnist").num_classes == 10  # alias
    assert (data.info("cifar10").input_shape, data.info("cifar10").num_classes) == ((3, 32, 32), 10)
    assert data.info("cifar100").num_classes == 100 and len(set(data.info("cifar100").classes)) == 100
    assert data.info("imagenette").input_shape == (3, 64, 64)
    assert data.info("imagenette", image_size=96).input_shape == (3, 96, 96)
    assert data.info("imagenette").classes[1] == "English springer"
    assert data.info("digits").input_shape == (1, 28, 28)
    syn = data.info("synthetic", input_shape=(3, 16, 16), num_classes=4)
    assert (syn.input_shape, syn.num_classes) == ((3, 16, 16), 4)


# ------------------------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("writer", ["py2", "py3"])
def test_cifar10_round_trip(tmp_path, writer):
    written = make_cifar10(tmp_path, writer=writer)
    train = data.load("cifar10", "train", tmp_path, val_fraction=0.25, seed=3, augment=False)
    val = data.load("cifar10", "val", tmp_path, val_fraction=0.25, seed=3)
    test = data.load("cifar10", "test", tmp_path)

    rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([written[f"data_batch_{i}"][1] for i in range(1, 6)])
    ids_train, ids_val = train.images[:, 0, 0, 0].numpy(), val.images[:, 0, 0, 0].numpy()
    assert (len(ids_train), len(ids_val)) == (15, 5)
    assert sorted([*ids_train, *ids_val]) == list(range(20))
    for ds, ids in ((train, ids_train), (val, ids_val)):
        flat = ds.images.reshape(len(ds), -1).numpy()
        assert np.array_equal(flat, rows[ids])  # C×H×W order is the file's R, G, B planes
        assert np.array_equal(ds.labels.numpy(), labels[ids])
    # channel 0 row 0 is the first 32 bytes of the row (red plane), channel 2 starts at byte 2048
    assert np.array_equal(test.images[1, 0, 0].numpy(), written["test_batch"][0][1, :32])
    assert np.array_equal(test.images[1, 2, 0].numpy(), written["test_batch"][0][1, 2048:2080])
    assert test.labels.tolist() == written["test_batch"][1]
    assert test.classes[0] == "airplane" and test.num_classes == 10 and test.input_shape == (3, 32, 32)

    x, y = test[2]
    want = expected_normalised(written["test_batch"][0][2].reshape(3, 32, 32), test.mean, test.std)
    assert torch.allclose(x.double(), want, atol=1e-5) and y == written["test_batch"][1][2]
    assert test.mean == (0.4914, 0.4822, 0.4465)


@pytest.mark.parametrize("writer", ["py2", "py3"])
def test_cifar100_round_trip_fine_labels(tmp_path, writer):
    written = make_cifar100(tmp_path / "cifar100", writer=writer)  # <root>/<name>/cifar-100-python
    test = data.load("cifar100", "test", tmp_path)
    assert np.array_equal(test.images.reshape(5, -1).numpy(), written["test"][0])
    assert test.labels.tolist() == written["test"][1]
    assert test.num_classes == 100 and test.classes[:2] == ("fine0", "fine1")
    train = data.load("cifar100", "train", tmp_path, val_fraction=0.0)
    assert np.array_equal(train.images.reshape(20, -1).numpy(), written["train"][0])


@pytest.mark.parametrize("payload", [SystemCall("touch {marker}"), Eval("open({marker!r}, 'w')")])
@pytest.mark.parametrize("where", ["batch", "meta"])
def test_cifar_malicious_pickle_refused_without_running(tmp_path, payload, where):
    make_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    if isinstance(payload, SystemCall):
        payload = SystemCall(payload.command.format(marker=marker))
        refused = "posix.system"
    else:
        payload = Eval(payload.source.format(marker=str(marker)))
        refused = "__builtin__.eval"  # protocol 2 spells builtins the Python 2 way
    target = "data_batch_3" if where == "batch" else "batches.meta"
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": payload}
    (tmp_path / "cifar-10-batches-py" / target).write_bytes(py3_pickle(batch))
    with pytest.raises(DataError) as excinfo:
        data.load("cifar10", "train", tmp_path)
    assert_one_line_error(excinfo, target, f"refuses to unpickle {refused}")
    assert not marker.exists()


def test_cifar_refuses_numpy_gadgets(tmp_path):
    make_cifar10(tmp_path)
    evil = b"\x80\x02cnumpy.testing._private.utils\nrunstring\nX\x03\x00\x00\x001+1}\x86R."
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(evil)
    with pytest.raises(DataError) as excinfo:
        data.load("cifar10", "test", tmp_path)
    assert_one_line_error(excinfo, "refuses to unpickle numpy.testing._private.utils.runstring")


def _broken_cifar_batches():
    ok = np.zeros((4, 3072), np.uint8)
    good = py2_pickle({b"data": ok, b"labels": [0, 1, 2, 3]})
    return {
        "truncated": (good[: len(good) // 2], "corrupt pickle"),
        "garbage": (b"not a pickle at all", "corrupt pickle"),
        "not-a-dict": (py3_pickle([1, 2, 3]), "expected a pickled dict, found list"),
        "no-labels": (py2_pickle({b"data": ok}), "no 'labels' entry"),
        "count-mismatch": (py2_pickle({b"data": ok, b"labels": [0, 1, 2]}), "must be 4 integers"),
        "label-range": (py2_pickle({b"data": ok, b"labels": [0, 1, 10, 3]}), "label 10 at index 2"),
        "wrong-dtype": (py3_pickle({b"data": ok.astype(np.int64), b"labels": [0] * 4}), "uint8 Nx3072"),
        "wrong-width": (py3_pickle({b"data": ok[:, :3000], b"labels": [0] * 4}), "uint8 Nx3072"),
    }


@pytest.mark.parametrize("case", list(_broken_cifar_batches()))
def test_cifar_corrupt_batches(tmp_path, case):
    payload, needle = _broken_cifar_batches()[case]
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(payload)
    with pytest.raises(DataError) as excinfo:
        data.load("cifar10", "val", tmp_path)
    assert_one_line_error(excinfo, "data_batch_2", needle)


def test_cifar_missing_batch(tmp_path):
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(DataError, match="missing .*data_batch_5"):
        data.load("cifar10", "train", tmp_path)


# ------------------------------------------------------------------------------------ augmentation


def _all_shifts(image: np.ndarray, pad: int, flip: bool) -> list[np.ndarray]:
    """Every image a pad-crop (+ optional flip) can produce, by brute force in numpy."""
    c, h, w = image.shape
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    out = []
    for dy, dx in itertools.product(range(2 * pad + 1), repeat=2):
        crop = padded[:, dy : dy + h, dx : dx + w]
        out.append(crop)
        if flip:
            out.append(crop[:, :, ::-1])
    return out


@pytest.mark.parametrize("pad,flip", [(4, True), (2, False), (0, True)])
def test_augment_batch_is_a_shift_or_flip_of_each_image(pad, flip):
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(32, 3, 10, 12), dtype=np.uint8)
    gen = torch.Generator().manual_seed(7)
    out = data.augment_batch(torch.from_numpy(images), data.Augment(pad, flip), gen).numpy()
    assert out.shape == images.shape and out.dtype == np.uint8
    for original, augmented in zip(images, out):
        assert any(np.array_equal(augmented, cand) for cand in _all_shifts(original, pad, flip))
    assert not np.array_equal(out, images)  # 32 images all left unchanged: vanishingly unlikely
    again = data.augment_batch(torch.from_numpy(images), data.Augment(pad, flip), torch.Generator().manual_seed(7))
    assert np.array_equal(again.numpy(), out)


def test_cifar_augmented_train_batches(tmp_path):
    written = make_cifar10(tmp_path)
    train = data.load("cifar10", "train", tmp_path, val_fraction=0.0)
    assert train.augment == data.Augment(pad=4, flip=True)
    assert data.load("cifar10", "test", tmp_path).augment is None
    assert data.load("cifar10", "train", tmp_path, augment=False).augment is None
    assert data.load("cifar10", "test", tmp_path, augment=True).augment == data.Augment(pad=4, flip=True)

    rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    scale = torch.tensor(train.std).view(3, 1, 1) * 255
    shift = torch.tensor(train.mean).view(3, 1, 1) * 255
    for x, y in data.batches(train, 8, shuffle=True, seed=1):
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        u8 = (x * scale + shift).round().to(torch.uint8).numpy()  # undo normalisation
        for img in u8:
            candidates = [r for r in rows if any(np.array_equal(img, c) for c in _all_shifts(r, 4, True))]
            assert candidates
    x0, _ = train[0]
    assert x0.shape == (3, 32, 32)


# ------------------------------------------------------------------------------------------ batches


def test_iter_batches_agree_with_getitem(tmp_path):
    make_idx_tree(tmp_path / "fashion-mnist")
    ds = data.load("fashion-mnist", "train", tmp_path, val_fraction=0.0)
    xs, ys = zip(*data.batches(ds, 7))
    assert [len(y) for y in ys] == [7] * 7 + [1]
    stacked = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.equal(torch.cat(xs), stacked)
    assert torch.cat(ys).tolist() == [ds[i][1] for i in range(len(ds))]

    # shuffled: the order is torch.randperm of a generator seeded with `seed`
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(11))
    xs, ys = zip(*data.batches(ds, 16, shuffle=True, seed=11))
    assert torch.equal(torch.cat(xs), stacked[order])
    assert torch.cat(ys).tolist() == [ds[int(i)][1] for i in order]
    again = torch.cat([x for x, _ in data.batches(ds, 16, shuffle=True, seed=11)])
    assert torch.equal(again, stacked[order])
    assert len(list(data.batches(ds, 16, drop_last=True))) == 3
    with pytest.raises(DataError, match="batch_size"):
        data.batches(ds, 0)
    with pytest.raises(DataError, match="batch_size"):
        ds.iter_batches(-1)


def test_batches_falls_back_to_dataloader():
    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.full((1, 2, 2), float(i)), i

    out = list(data.batches(Plain(), 4))
    assert [y.tolist() for _, y in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert out[2][0].shape == (2, 1, 2, 2) and out[2][0][1, 0, 0, 0] == 9
    shuffled = torch.cat([y for _, y in data.batches(Plain(), 4, shuffle=True, seed=3)])
    assert sorted(shuffled.tolist()) == list(range(10))


# --------------------------------------------------------------------------------------- Imagenette


def test_imagenette_splits_classes_and_shapes(tmp_path):
    make_imagenette(tmp_path)
    train = data.load("imagenette", "train", tmp_path, image_size=24, val_fraction=0.25, augment=False)
    val = data.load("imagenette", "val", tmp_path, image_size=24, val_fraction=0.25)
    test = data.load("imagenette", "test", tmp_path, image_size=24)
    assert (len(train), len(val), len(test)) == (9, 3, 6)
    assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}
    assert train.classes == ("tench", "English springer", UNKNOWN_CLASS)
    assert train.input_shape == (3, 24, 24) and train.num_classes == 3
    folders = [TENCH, SPRINGER, UNKNOWN_CLASS]
    for ds in (train, val, test):
        for path, label in ds.samples:
            assert path.parent.name == folders[label]
    assert {path.parent.parent.name for path, _ in test.samples} == {"val"}
    assert test.labels.tolist() == [0, 0, 1, 1, 2, 2]

    # decoded colour ≈ the solid colour written (JPEG is lossy: a few levels), greyscale made RGB
    for ds in (train, test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 24, 24) and x.dtype == torch.float32
            u8 = x * torch.tensor(ds.std).view(3, 1, 1) * 255 + torch.tensor(ds.mean).view(3, 1, 1) * 255
            colour = torch.tensor(CLASS_COLOURS[folders[y]], dtype=torch.float32)
            if ds.samples[i][0].name.endswith("_2.JPEG"):  # greyscale file: the luma of the colour
                colour = torch.full((3,), float(np.dot((0.299, 0.587, 0.114), CLASS_COLOURS[folders[y]])))
            assert (u8.mean(dim=(1, 2)) - colour).abs().max() < 6

    xs, ys = zip(*data.batches(test, 4))
    assert torch.cat(xs).shape == (6, 3, 24, 24) and torch.cat(ys).tolist() == test.labels.tolist()
    memory = test.to_memory()
    assert torch.equal(memory[4][0], test[4][0]) and memory.labels.tolist() == test.labels.tolist()


def test_imagenette_centre_crop_exact_and_augmentation(tmp_path):
    root = tmp_path / "imagenette"
    three_band_png(root / "train" / TENCH / "a.png")
    three_band_png(root / "val" / TENCH / "b.png")
    test = data.load("imagenette", "test", tmp_path, image_size=32)
    x, _ = test[0]
    green = np.zeros((3, 32, 32), np.uint8)
    green[1] = 255
    assert torch.allclose(x.double(), expected_normalised(green, test.mean, test.std), atol=1e-5)

    # the train split is augmented by default: random squares along the long side, shifts, flips
    train = data.load("imagenette", "train", tmp_path, image_size=32, val_fraction=0.0)
    assert train.augment == data.Augment(pad=4, flip=True)
    torch.manual_seed(0)
    red_or_blue = [train[0][0][[0, 2]].max() > 0 for _ in range(20)]
    assert any(red_or_blue)  # some crops reach the red or blue bands
    small = data.load("imagenette", "test", tmp_path)
    assert small[0][0].shape == (3, 64, 64)  # default image_size


def test_imagenette_broken_trees(tmp_path):
    base = make_imagenette(tmp_path)
    bad = base / "train" / TENCH / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    train = data.load("imagenette", "train", tmp_path, val_fraction=0.0, augment=False)
    index = [p for p, _ in train.samples].index(bad)
    with pytest.raises(DataError) as excinfo:
        train[index]
    assert_one_line_error(excinfo, "broken.JPEG", "cannot decode image")

    truncated = base / "val" / TENCH / "cut.JPEG"
    good = next((base / "val" / TENCH).glob("*_0.JPEG")).read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    test = data.load("imagenette", "test", tmp_path)
    index = [p for p, _ in test.samples].index(truncated)
    with pytest.raises(DataError, match="cut.JPEG: cannot decode image"):
        test[index]

    (base / "val" / "n99999999").mkdir()
    with pytest.raises(DataError, match="class folder.*not in train/: n99999999"):
        data.load("imagenette", "test", tmp_path)

    with pytest.raises(DataError, match="image_size"):
        data.load("imagenette", "train", tmp_path, image_size=3)


def test_imagenette_missing_val_and_empty(tmp_path):
    (tmp_path / "imagenette2" / "train" / TENCH).mkdir(parents=True)
    status = {s.name: s for s in data.available(tmp_path)}["imagenette"]
    assert not status.found and status.detail == "missing val/"
    with pytest.raises(DataError, match="no images"):
        data.load("imagenette", "train", tmp_path)
    Image.new("RGB", (20, 20)).save(tmp_path / "imagenette2" / "train" / TENCH / "x.JPEG")
    with pytest.raises(DataError, match="no val/ folder"):
        data.load("imagenette", "test", tmp_path)


# -------------------------------------------------------------------------------- digits, synthetic


def test_digits_splits_and_values():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    splits = {s: data.load("digits", s) for s in data.SPLITS}
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (1294, 144, 359)
    assert splits["test"].input_shape == (1, 28, 28) and splits["test"].num_classes == 10
    images = torch.cat([ds.images for ds in splits.values()])[:, 0].numpy()
    labels = torch.cat([ds.labels for ds in splits.values()]).numpy()
    # bilinear (align_corners=False) upsampling keeps the four corner pixels: an exact, independent check
    src = np.round(bunch.images / 16 * 255).astype(np.uint8)

    def signature(lab, img, corners):
        return [(int(lab[i]), *(int(img[i][r, c]) for r, c in corners)) for i in range(len(lab))]

    got = signature(labels, images, [(0, 0), (0, 27), (27, 0), (27, 27)])
    want = signature(bunch.target, src, [(0, 0), (0, 7), (7, 0), (7, 7)])
    assert sorted(got) == sorted(want)
    # the stated normalisation constants are those of the data
    pixels = images.astype(np.float64) / 255
    assert abs(pixels.mean() - data.load("digits", "test").mean[0]) < 1e-3
    assert abs(pixels.std() - data.load("digits", "test").std[0]) < 1e-3
    # test never depends on the val seed
    assert torch.equal(data.load("digits", "test", seed=9).images, splits["test"].images)


def test_synthetic_deterministic_configurable_learnable():
    opts = dict(num_samples=300, num_test=100, num_classes=4, input_shape=(3, 12, 10))
    train = data.load("synthetic", "train", val_fraction=0.0, **opts)
    test = data.load("synthetic", "test", **opts)
    assert train.input_shape == (3, 12, 10) and train.num_classes == 4 and len(train) == 300 and len(test) == 100
    assert torch.bincount(train.labels).tolist() == [75] * 4
    assert torch.equal(data.load("synthetic", "test", **opts).images, test.images)
    other = data.load("synthetic", "test", **{**opts, "data_seed": 1})
    assert not torch.equal(other.images, test.images)
    # normalised train data has per-channel mean 0 and std 1 (stats computed from the train set)
    x = torch.cat([b for b, _ in data.batches(train, 64)])
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-3)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    # learnable: nearest class mean classifies held-out samples well
    means = torch.stack([x[train.labels == k].mean(0) for k in range(4)])
    xt = torch.cat([b for b, _ in data.batches(test, 64)])
    pred = torch.cdist(xt.flatten(1), means.flatten(1)).argmin(1)
    assert (pred == test.labels).float().mean() > 0.9
    default = data.load("synthetic", "val")
    assert default.input_shape == (1, 28, 28) and default.num_classes == 10 and len(default) == 400
    with pytest.raises(DataError, match="unknown option"):
        data.load("synthetic", colour=1)


# ---------------------------------------------------------------------------- real Fashion-MNIST


@pytest.mark.skipif(
    not (FASHION_SYSTEM / "train-images-idx3-ubyte.gz").exists(),
    reason=f"{FASHION_SYSTEM} absent (install the Debian package dataset-fashion-mnist)",
)
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setattr(_locate, "SYSTEM_ROOT", FASHION_SYSTEM.parent)
    train = data.load("fashion-mnist", "train")
    val = data.load("fashion-mnist", "val")
    test = data.load("fashion-mnist", "test")
    assert (len(train), len(val), len(test)) == (54000, 6000, 10000)
    assert train.num_classes == 10 and train.input_shape == (1, 28, 28)
    assert torch.bincount(torch.cat([train.labels, val.labels])).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    # mean / std of the 60,000 training images from a histogram of pixel values (cheap, exact)
    counts = torch.bincount(train.images.flatten(), minlength=256) + torch.bincount(val.images.flatten(), minlength=256)
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * values).sum() / counts.sum()
    std = ((counts * (values - mean) ** 2).sum() / counts.sum()).sqrt()
    assert abs(mean - train.mean[0]) < 1e-3 and abs(std - train.std[0]) < 1e-3
    n = sum(len(y) for _, y in data.batches(train, 256))
    assert n == 54000
