"""Data-parallel fine-tuning: shards reassemble the single-process batches; 2 gloo processes = 1 process."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys

import pytest
import torch

from tensorslim import modeldir
from tensorslim.distributed import DistInfo, ShardedDataset, init_from_env, shard
from tensorslim.finetune import finetune


@pytest.mark.parametrize(("world", "batch"), [(2, 16), (3, 16), (2, 7)])
def test_shards_reassemble_the_single_process_batches(sets, world, batch):
    ds = sets[0]
    shards = [ShardedDataset(ds, r, world) for r in range(world)]
    per_rank = [list(s.iter_batches(batch, shuffle=True, generator=torch.Generator().manual_seed(5)))
                for s in shards]
    reference = list(ds.iter_batches(batch * world, shuffle=True, generator=torch.Generator().manual_seed(5)))
    assert all(len(p) == len(reference) for p in per_rank)
    assert math.ceil(len(shards[0]) / batch) == len(reference)  # what train() counts as steps per epoch
    for step, (x, y) in enumerate(reference):
        xs = torch.cat([p[step][0] for p in per_rank])
        ys = torch.cat([p[step][1] for p in per_rank])
        assert torch.equal(xs, x) and torch.equal(ys, y)
        sizes = [len(p[step][1]) for p in per_rank]
        assert max(sizes) - min(sizes) <= 1


def test_single_process_fallbacks(sets, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_from_env()
    assert info == DistInfo() and info.is_main and not info.active
    assert shard(sets[0], info) is sets[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(base_dir, tmp_path):
    args = [str(base_dir), "--method", "svd", "--rank", "12", "--layers", "classifier.fc1", "--epochs", "1",
            "--max-batches", "4", "--batch-size", "32", "--out", str(tmp_path / "ddp")]
    # what torchrun sets for each worker (the launcher itself is left out: one interpreter start less)
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        procs.append(subprocess.Popen([sys.executable, "-m", "tensorslim.cli.ddp_main", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    ddp = modeldir.load(tmp_path / "ddp")
    record = (tmp_path / "ddp" / "finetune.json").read_text()
    assert '"world_size": 2' in record
    # reference: the ordinary single-process path (tensorslim.train.train), same global batch and seed
    single = finetune(base_dir, "synthetic", plan={"rules": [{"layers": "classifier.fc1", "method": "svd",
                                                              "rank": 12}]},
                      epochs=1, max_batches=4, batch_size=32, log=None, evaluate_test=False).model
    a, b = ddp.state_dict(), single.state_dict()
    assert a.keys() == b.keys()
    start = modeldir.load(base_dir).state_dict()
    assert not torch.equal(a["classifier.fc2.weight"], start["classifier.fc2.weight"])  # it did train
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
