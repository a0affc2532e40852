# tensorslim: `make demo` runs the default job, `make test` runs the tests. Both set up .venv/ first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench clean verify

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt "torch==2.13.0+cpu"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,edge]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/tensorslim demo

# each test runs on one torch thread (tests/_threads.py), so one pytest worker per core; a file's tests stay on one
# worker (--dist loadfile), so its module fixtures are built once
JOBS ?= 2
test: setup
	$(PY) -m pytest -n $(JOBS) --dist loadfile

# re-measures the committed models in benchmarks/models/ against BENCHMARKS.md (needs Fashion-MNIST)
verify: setup
	$(PY) benchmarks/verify.py

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache runs
