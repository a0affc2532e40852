"""Where file-based datasets are looked for.

For each root in order — the ``data_dir`` argument (``./data`` when ``None``), then ``$TENSORSLIM_DATA`` —
the bases ``<root>/<name>`` then ``<root>`` are tried, and finally the system location
``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist`` installs there). Inside each base,
a dataset may look into a list of layout sub-folders (``cifar-10-batches-py``, ``imagenette2-160``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "TENSORSLIM_DATA"
DEFAULT_ROOT = Path("data")
SYSTEM_ROOT = Path("/usr/share/datasets")


@dataclass(frozen=True)
class Search:
    """Outcome of a search: ``path`` is the folder found (or ``None``); ``places`` says where we looked."""

    path: Path | None
    places: str


def _roots(data_dir: str | os.PathLike | None) -> tuple[list[Path], str]:
    """User roots in lookup order, plus a note when ``$TENSORSLIM_DATA`` is unset (else ``""``)."""
    roots = [Path(data_dir) if data_dir is not None else DEFAULT_ROOT]
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(Path(env))
        return roots, ""
    return roots, f"${ENV_VAR} unset"


def _show(path: Path) -> str:
    text = str(path)
    return text if path.is_absolute() or text.startswith(".") else f"./{text}"


def _safe_probe(probe: Callable[[Path], bool], path: Path) -> bool:
    """``probe(path)``, treating an unreadable location (permissions, broken links) as absent."""
    try:
        return bool(probe(path))
    except OSError:
        return False


def find(
    name: str,
    data_dir: str | os.PathLike | None,
    probe: Callable[[Path], bool],
    subdirs: Sequence[str] = ("",),
) -> Search:
    """Return the first folder ``base/subdir`` for which ``probe`` is true, searching as described above."""
    roots, env_note = _roots(data_dir)
    bases: list[Path] = []
    for root in roots:
        bases += [root / name, root]
    bases.append(SYSTEM_ROOT / name)
    seen: list[Path] = []
    for base in bases:
        if base in seen:
            continue
        seen.append(base)
        for sub in subdirs:
            candidate = base / sub if sub else base
            if _safe_probe(probe, candidate):
                return Search(candidate, "")
    shown = [_show(b) for b in seen]
    if env_note:  # where the variable would have been searched: after the data_dir bases
        shown.insert(min(2, len(shown) - 1), env_note)
    return Search(None, ", ".join(shown))
