# One-command set-up: every target creates .venv if missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test report lab lint typecheck bench validate clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned (2.13.0, CPU build from local disk on the dev machines); install it first so
	# nothing else pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	$(PY) -m ipykernel install --sys-prefix --name moe-fleetcost --display-name "moe-fleetcost" >/dev/null
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy gpus moe sim kernels_numba reports
	$(PY) -m pytest -n 2 tests

report: $(STAMP)
	$(PY) -m sim.cli report

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --allow-root --notebook-dir=notebooks

bench: $(STAMP)
	for f in benchmarks/*.py; do $(PY) $$f || exit 1; done

validate: $(STAMP)
	$(PY) -m kernels_numba.validate

clean:
	rm -rf $(VENV) build *.egg-info reports/output
