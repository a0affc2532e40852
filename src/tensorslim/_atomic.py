"""Write files and directories so that a failure never leaves partial output behind.

Everything is first written next to its destination under a temporary name, then moved into place with
``os.replace`` (atomic on one filesystem). An exception inside the ``with`` block removes the temporary.

A directory that already exists is swapped with its replacement in one step (Linux ``renameat2`` with
``RENAME_EXCHANGE``), so a reader, or a process killed at any instant (``kill -9``), sees the old directory or
the new one, never none. Where the exchange is not available, the old directory is first moved aside and put
back by :func:`recover` (called by every write to the same destination) if the process died in between.

Temporaries are named ``.<name>.<host>-<pid>.<random>.tmp``; ones left by a killed process of this host are
removed by the next write next to them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _prefix(name: str) -> str:
    return f".{name}.{_HOST}-{os.getpid()}."


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _stale(parent: Path, name: str) -> list[Path]:
    """Temporaries of ``name`` in ``parent`` left by dead processes of this host."""
    pattern = re.compile(rf"\.{re.escape(name)}\.{re.escape(_HOST)}-(\d+)\.(?:\w+\.tmp|old)")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    return [p for p in entries
            if (m := pattern.fullmatch(p.name)) and int(m[1]) != os.getpid() and not pid_alive(int(m[1]))]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@functools.cache
def _umask() -> int:
    try:  # reading it does not change it (os.umask does, for every thread)
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("Umask:"))
        return int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def recover(dest: str | os.PathLike) -> None:
    """Put back a directory that a killed process had moved aside, and remove dead processes' temporaries."""
    dest = Path(dest)
    for path in _stale(dest.parent, dest.name):
        if path.name.endswith(".old") and not dest.exists():
            os.replace(path, dest)
        else:
            _remove(path)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path; on success it replaces ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover(dest)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(dest.name), suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 is for the temporary only
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(dest: str | os.PathLike, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem or kernel cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, dest: Path) -> None:
    """Make ``tmp`` the directory ``dest``; the previous ``dest`` ends up at ``tmp`` (to be removed)."""
    if not dest.exists():
        os.replace(tmp, dest)
        return
    if _exchange(tmp, dest):
        return
    old = dest.with_name(_prefix(dest.name) + "old")
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(old, dest)  # an interrupt between the two moves must not lose ``dest``
        raise
    os.replace(old, tmp)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, *, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``dest`` as a whole.

    ``keep`` names entries of an existing ``dest`` to carry over into the new one when the block did not
    write them (e.g. a checkpoint folder). On failure ``dest`` is left exactly as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover(dest)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(dest.name), suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 is for the temporary only
        for name in keep:
            if (dest / name).exists() and not (tmp / name).exists():
                shutil.copytree(dest / name, tmp / name) if (dest / name).is_dir() else \
                    shutil.copy2(dest / name, tmp / name)
        _swap_in(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
