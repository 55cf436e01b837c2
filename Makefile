# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
export PYO3_PYTHON := $(abspath $(PY))

.PHONY: demo test build lint pytest pytest-spark35 cargo-test stubtest clean

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

# PySpark 3.5 (Databricks LTS 14.3 to 16.4) beside the main venv's PySpark 4: a second venv with
# those runtimes' generation of pandas/numpy runs the cookbook's Spark steps (same rows as on
# Spark 4) against the package in python/ (no second build: the extension is abi3), on a classic
# session and as a 3.5 Spark Connect client of a 4.x server started from the main venv.
SPARK35 ?= .venv-spark35
SPARK35_PY := $(SPARK35)/bin/python
# Python 3.11 and pyarrow 14, as on Databricks 15.4 LTS (PySpark 3.5 predates 3.12's removal of distutils).
SPARK35_BASE ?= $(shell command -v python3.11 || command -v python3)
SPARK35_REQS := pyspark==3.5.* pandas==1.5.3 numpy==1.26.* pyarrow==14.* scipy<1.16 pytest>=8 \
	grpcio>=1.56 grpcio-status>=1.56 googleapis-common-protos>=1.56.4 protobuf<5
SPARK35_STAMP := $(SPARK35)/.installed-$(shell echo '$(SPARK35_REQS)' | cksum | cut -d' ' -f1)

$(SPARK35_STAMP):
	test -x $(SPARK35_PY) || $(SPARK35_BASE) -m venv $(SPARK35)
	$(SPARK35_PY) -m pip install -q $(foreach r,$(SPARK35_REQS),"$(r)")
	rm -f $(SPARK35)/.installed-*
	touch $@

pytest-spark35: build $(SPARK35_STAMP)
	PYTHONPATH=$(CURDIR)/python RUSKET_CONNECT_SERVER_PYTHON=$(abspath $(PY)) $(SPARK35_PY) -m \
		pytest -q tests/test_spark_compat.py tests/test_spark_session.py tests/test_spark_connect.py \
		tests/test_spark_ingest.py

cargo-test: $(STAMP)
	cargo test --release -q

pytest: build
	$(PY) -m pytest -q

test: lint cargo-test pytest stubtest pytest-spark35

clean:
	rm -rf $(VENV) $(SPARK35) target
