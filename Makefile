# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
export PYO3_PYTHON := $(abspath $(PY))

.PHONY: demo test build lint pytest cargo-test stubtest clean

# The virtual environment with every extra (Spark, plots, vector stores...) and the dev tools.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.7,<2"
	$(PY) -m pip install -q -e ".[all,dev,bench]"
	rm -f $(VENV)/.installed-*
	touch $@

# Rebuilds the Rust extension in release mode (incremental: a no-op when nothing changed).
build: $(STAMP)
	$(VENV)/bin/maturin develop --release -q

demo: build
	$(PY) examples/cookbook.py

lint: $(STAMP)
	$(VENV)/bin/ruff check python tests benchmarks examples
	$(VENV)/bin/ruff format --check -q python tests benchmarks examples
	$(VENV)/bin/mypy python/rusket
	cargo fmt --check
	cargo clippy --release --all-targets -q -- -D warnings

# The hand-written stubs must match the compiled extension.
stubtest: build
	$(PY) -m mypy.stubtest rusket._core --allowlist tests/stubtest-allowlist.txt

cargo-test: $(STAMP)
	cargo test --release -q

pytest: build
	$(PY) -m pytest -q

test: lint cargo-test pytest stubtest

clean:
	rm -rf $(VENV) target
