"""A search worker process for the distributed tests: ``python search_worker.py STORAGE STUDY N EPOCHS HB GRACE``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from search_testutil import DATA_OPTIONS, tiny_space  # noqa: E402

from tensorslim.search import Fidelity, run_study  # noqa: E402


def main() -> None:
    storage, study, n, epochs, hb, grace = sys.argv[1:7]
    torch.set_num_threads(1)
    run_study("synthetic", space=tiny_space(), n_trials=int(n), storage=storage, study=study, strategy="random",
              low_fidelity=Fidelity(epochs=int(epochs), max_batches=1, val_batches=1, batch_size=32),
              dataset_options=DATA_OPTIONS, pruner=None, heartbeat_interval=int(hb), grace_period=int(grace),
              poll_seconds=0.5, log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()
