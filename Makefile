# make test          - set up everything (venv, pinned packages, data) and run the test suite
# make book          - run the missing experiments of PROFILE, execute the notebooks, build the HTML
# make book PROFILE=smoke|default|paper
PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
PROFILE    ?= default
EXPERIMENTS := original_tables alpha_sensitivity selection poisonedfl_prodigy attack_effect explorer

# torch reads it when it starts: large CPU tensors on transparent huge pages (flcore/sim/memory.py)
export THP_MEM_ALLOC_ENABLE ?= 1

# the smoke profile computes into a scratch store, never into the committed one
ifeq ($(PROFILE),smoke)
export FLCORE_RESULTS ?= $(CURDIR)/_build/smoke-results
endif

.PHONY: all setup data devdata browser test book book-test sweeps notebooks html bench clean-book

all: test

# the pinned packages, then flcore itself in editable mode (its dependencies are the
# pinned ones: --no-deps and --no-build-isolation download nothing more; setuptools is
# installed or upgraded only where the venv's is missing or older than 77, the first with
# the licence fields of pyproject.toml)
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON_SYS) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(PY) -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" 2>/dev/null \
		|| $(VENV)/bin/pip install --quiet "setuptools>=77"
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed data

# Fashion-MNIST: Debian's package where apt works (offline machines), else
# torchvision downloads it at first use. CIFAR-10: see README.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "note: apt-get could not install dataset-fashion-mnist; torchvision will download Fashion-MNIST"; \
	fi

# the datasets for a GPU machine without network (scripts/device_sweep.sh; carry .devdata):
# Fashion-MNIST's IDX files, and with CIFAR=1 the CIFAR-10 JPEG copy
devdata: data
	mkdir -p .devdata/fashion-mnist
	cp /usr/share/datasets/fashion-mnist/*.gz .devdata/fashion-mnist/
	@if [ "$(CIFAR)" = 1 ]; then cp ../shared/data/cifar10-jpeg.tar.gz .devdata/; fi

# Debian's Chromium renders the built book in the offline-reading test
browser:
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "note: apt-get could not install chromium; the offline-reading test will be skipped"; \
	fi

test: setup
	$(PY) -m pytest -q tests

book-test: browser
	$(PY) -m pytest -q tests/test_book_offline.py

sweeps: setup
	$(PY) -m flcore.build.book sweeps --profile $(PROFILE)

notebooks: sweeps
	$(PY) -m flcore.build.book notebooks --profile $(PROFILE)

html: notebooks
	$(PY) -m flcore.build.book generated --profile $(PROFILE)
	FLCORE_BOOK_PROFILE=$(PROFILE) $(VENV)/bin/jupyter-book build . -W -n --keep-going

book: html
	@echo "book: $(CURDIR)/_build/html/index.html"

bench: setup
	$(PY) -m flcore bench

clean-book:
	rm -rf _build notebooks/_executed
	rm -f book/experiments/*.ipynb
	git checkout -- book/experiments book/_generated 2>/dev/null || true
