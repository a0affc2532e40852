"""The study an explore or search run leaves is read by optuna-dashboard itself (its WSGI app, no server):
the study, its directions, named objectives, and every trial with the values Optuna holds."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import optuna
import pytest

from tensorslim.explore import explore

from .conftest import SYNTH

optuna_dashboard = pytest.importorskip("optuna_dashboard")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "search"))
from search_testutil import DATA_OPTIONS, LOW, tiny_space  # noqa: E402

from tensorslim.search import search  # noqa: E402


def _get(app, path: str):
    """One GET through the dashboard's WSGI app; the decoded JSON body."""
    status: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "test",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr}
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (path, status, body[:300])
    return json.loads(body)


def _check(where: str, names: list[str], storage=None) -> None:
    """The dashboard's view of every study in ``where`` (what one types after ``optuna-dashboard``) against
    Optuna's own reading of it (the independent reference)."""
    app = optuna_dashboard.wsgi(where)
    url = storage or where
    listed = _get(app, "/api/studies")["study_summaries"]
    studies = optuna.get_all_study_summaries(url)
    assert sorted(s["study_name"] for s in listed) == sorted(s.study_name for s in studies)
    for summary in listed:
        study = optuna.load_study(study_name=summary["study_name"], storage=url)
        detail = _get(app, f"/api/studies/{summary['study_id']}")
        assert detail["name"] == study.study_name
        assert [d.lower() for d in detail["directions"]] == [d.name.lower() for d in study.directions]
        assert detail["objective_names"] == names == study.metric_names
        done = {t.number: t.values for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
        shown = {t["number"]: t["values"] for t in detail["trials"] if t["state"] == "Complete"}
        assert shown.keys() == done.keys() and done
        for n, values in done.items():
            assert shown[n] == pytest.approx(values)


def test_the_explore_study_opens_in_optuna_dashboard(tiny_dir, tmp_path):
    explore(tiny_dir, "synthetic", out=tmp_path / "o", methods=["svd", "tucker2"], max_evals=6, full_evals=1,
            finetune_batches=2, val_samples=60, max_error=0.9, data_options=SYNTH, log=None)
    _check(f"sqlite:///{tmp_path / 'o' / 'study.db'}", ["macs (MACs)", "memory (bytes)", "accuracy (%)"])


def test_the_search_study_opens_in_optuna_dashboard(tmp_path):
    """search's default storage, the journal file in OUT, given to the dashboard as a plain path."""
    search("synthetic", space=tiny_space(), n_trials=3, strategy="random", low_fidelity=LOW,
           dataset_options=DATA_OPTIONS, out=tmp_path / "o", baselines=(), final_top=1, final=LOW, log=None)
    journal = tmp_path / "o" / "study.journal"
    reference = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    _check(str(journal), ["accuracy (%)", "params (parameters)", "macs (MACs)"], reference)
