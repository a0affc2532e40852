"""tensorslim.study: the storage API is there by name, and the Pareto/budget modules come without Optuna."""

from __future__ import annotations

import subprocess
import sys

import tensorslim.study as study
from tensorslim.study import storage


def test_the_lazy_names_are_the_storage_api():
    assert sorted(study.STORAGE_API) == sorted(storage.__all__)
    assert all(getattr(study, name) is getattr(storage, name) for name in storage.__all__)


def test_pareto_and_budget_do_not_load_optuna():
    code = ("import sys, tensorslim.study.pareto, tensorslim.study.budget, tensorslim.finetune; "
            "print(sorted(m for m in ('optuna', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = "import sys; from tensorslim.study import open_storage; print('optuna' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "True"
