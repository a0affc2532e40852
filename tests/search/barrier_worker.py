"""Worker processes released at the same moment, for the race tests.

``python barrier_worker.py BARRIER cli ARGS...``: import everything ``tensorslim search`` needs, write
``BARRIER.ready.PID``, wait until the file ``BARRIER`` exists, then run ``tensorslim search ARGS...`` in this
process (exit status 2 and ``error: ...`` on a TensorSlimError, as the CLI). With ``$FAKE_HOSTNAME`` set, the
worker records that host name (it plays a worker on another machine: no one can check its process id).

``python barrier_worker.py BARRIER open URL0 URL1 ...``: write ``BARRIER.ready.PID``; then for each round
``I``, wait for the file ``BARRIER.I``, open (create) the search study ``race`` on ``URLI`` with
:func:`tensorslim.search.run.open_study` (the storage and study creation path of every search worker), and
write ``ok STUDY_ID`` or ``ERR message`` to ``BARRIER.I.done.PID``. Only API that existed before the race fix
is used, so the test can be run against the old code.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

BARRIER_TIMEOUT = 300.0  # seconds; a worker whose test died never waits (or trains) forever


def _wait(path: Path) -> None:
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while not path.exists():
        if time.monotonic() > deadline:
            os._exit(3)
        time.sleep(0.0005)


def _exit_with_parent() -> None:
    """End this process when the test process that started it is gone (no orphans left training)."""
    parent = int(os.environ.get("BARRIER_PARENT", os.getppid()))  # set by study_checks.start

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    barrier, mode, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    pid = os.getpid()
    _exit_with_parent()
    if os.environ.get("FAKE_HOSTNAME"):
        import socket

        socket.gethostname = lambda: os.environ["FAKE_HOSTNAME"]
    if mode == "cli":
        import sklearn.datasets  # noqa: F401 - what a search worker imports before it opens the storage, so
        import torch._dynamo  # noqa: F401   that the workers reach it together (digits, cost's FLOP counter)

        from tensorslim import cost, data, train  # noqa: F401
        from tensorslim.cli import search as command

        Path(f"{barrier}.ready.{pid}").write_text("ready")
        _wait(barrier)
        command.main(args)
        return
    from tensorslim.search.run import open_study

    defn = {"objectives": ["accuracy", "params"], "space": {"race": True}}
    Path(f"{barrier}.ready.{pid}").write_text("ready")
    for i, url in enumerate(args):
        _wait(Path(f"{barrier}.{i}"))
        try:
            study = open_study("race", url, defn, heartbeat_interval=5)
            result = f"ok {study._study_id}"  # noqa: SLF001
        except Exception as err:  # noqa: BLE001 - reported to the test
            result = "ERR " + " ".join(f"{type(err).__name__}: {err}".split())[:400]
        Path(f"{barrier}.{i}.done.{pid}").write_text(result)


if __name__ == "__main__":
    main()
