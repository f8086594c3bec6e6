# Everything goes through pip in .venv: the CPU torch wheel pinned in constraints.txt comes from
# this machine's disk (uv/poetry would download a ~3 GB CUDA build instead).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast app bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the requirements change.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

app: install
	$(PY) app.py

bench: install
	$(PY) -m shared.bench

clean-venv:
	rm -rf $(VENV)
