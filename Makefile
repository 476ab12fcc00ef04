# make book : create/refresh .venv, then build the book with every chapter executed -> _build/html
# make test : create/refresh .venv, then unit tests (incl. the .md/.ipynb pair check), every notebook
#             through nbmake (once), and a -W -n build that renders those executed notebooks.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCRATCH := check-build
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: venv book test unit notebooks check-book pairs freeze clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@echo "==> creating/refreshing $(VENV) from requirements.txt"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade "pip>=24"
	@# torch first, pinned: the CPU build on this machine's disk (any other spec pulls CUDA builds)
	$(BIN)/python -m pip install -qq torch==2.13.0
	$(BIN)/python -m pip install -qq -r requirements.txt
	@touch $(STAMP)
	@echo "==> $(VENV) ready: $$($(BIN)/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"

book: venv
	@echo "==> building the book with every chapter executed -> _build/html"
	$(BIN)/jupyter-book build -W -n --keep-going .
	@echo "==> open _build/html/index.html"

unit: venv
	@echo "==> 1/3 unit tests and the .md/.ipynb pair check (tests/)"
	$(BIN)/python -m pytest tests -q

notebooks: venv
	@echo "==> 2/3 every notebook through nbmake, on a scratch copy ($(SCRATCH)); committed files untouched"
	$(BIN)/python scripts/executed_book.py $(SCRATCH)
	$(BIN)/python -m pytest --nbmake --overwrite --nbmake-timeout=1200 -p no:cacheprovider \
		--durations=0 --junitxml=$(SCRATCH)/nbmake.xml --ignore=$(SCRATCH)/book/about.ipynb $(SCRATCH)/book
	@# "About this build" last, so that it can show the durations nbmake just recorded
	LIGHTFT_EXECUTION_LOG=$(abspath $(SCRATCH))/nbmake.xml $(BIN)/python -m pytest --nbmake --overwrite \
		-p no:cacheprovider $(SCRATCH)/book/about.ipynb

check-book: venv
	@echo "==> 3/3 building the executed notebooks with -W -n (references, citations, glue keys, toc)"
	$(BIN)/jupyter-book build -W -n --keep-going $(SCRATCH)
	@echo "==> rendered check build in $(SCRATCH)/_build/html"

test: unit notebooks check-book
	@echo "==> make test: all passed"

pairs: venv
	@echo "==> regenerating each book/*.ipynb from its paired .md (outputs stripped)"
	@for f in $$(grep -l '^  formats: ipynb,md:myst' book/*.md); do $(BIN)/jupytext --quiet --to ipynb --update "$$f"; done
	$(BIN)/python -m pytest tests/test_book.py -q

freeze: venv
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' > /tmp/lightft-freeze.txt
	@echo "review /tmp/lightft-freeze.txt, then replace the pins in requirements.txt (keep the header and -e .)"

clean:
	rm -rf _build
