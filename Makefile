# One-command set-up: every target creates .venv if missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps test report lab lint typecheck bench validate clean

# System packages pip cannot install, on Debian: headless Chromium (the tests render report pages in
# it) and python3-venv (Debian's python3 lacks ensurepip without it). As root with apt-get they are
# installed here when missing; otherwise (not root: make will not sudo for you; no apt-get: not
# Debian) a message says what to install, and the run goes on (the Chromium test then fails).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || command -v google-chrome >/dev/null 2>&1 || missing="chromium"; \
	test -x $(PY) || $(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages: $$missing (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "warning: apt-get could not install $$missing; install it by hand"; \
	else \
	  echo "warning: missing system packages: $$missing. make installs them only as root on Debian"; \
	  echo "         (apt-get); here run: sudo apt-get install -y $$missing"; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned (2.13.0, CPU build from local disk on the dev machines); install it first so
	# nothing else pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	$(PY) -m ipykernel install --sys-prefix --name moe-fleetcost --display-name "moe-fleetcost" >/dev/null
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP) system-deps
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
