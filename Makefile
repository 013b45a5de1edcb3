# Every target sets itself up: on a fresh machine with Python 3.11+ and make, any of them works first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Ferry needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python examples/demo.py

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/bench_table.py
	$(BIN)/python bench/bench_verify.py
	$(BIN)/python bench/bench_sync.py
	$(BIN)/python bench/bench_bucket_sync.py
	$(BIN)/python bench/bench_limits.py
	$(BIN)/python bench/bench_bucket.py
	$(BIN)/python bench/bench_multipart.py
	$(BIN)/python bench/bench_faults.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
