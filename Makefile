# The two commands that do everything on a fresh machine:
#   make demo   installs what is missing, builds, generates ~1M events, runs creator-pay v1
#   make test   formatting, clippy (warnings denied) and every test
CARGO       ?= cargo
TALLY       := target/release/tally
RULES_DIR   := target/rules
RULES       := $(RULES_DIR)/creator-pay-v1.wasm $(RULES_DIR)/creator-pay-v2.wasm
DEMO_EVENTS ?= 1000000
WASM_TARGET := wasm32-unknown-unknown

PYTHON      ?= python3

.PHONY: demo test setup build rules bench browser python-deps postgres spark

setup:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

build: setup
	$(CARGO) build --release --workspace --bins

# The reference rules, compiled to wasm32-unknown-unknown and made into components.
rules: build
	@mkdir -p $(RULES_DIR)
	$(TALLY) rule build rules/creator-pay-v1 --out $(RULES_DIR)/creator-pay-v1.wasm
	$(TALLY) rule build rules/creator-pay-v2 --out $(RULES_DIR)/creator-pay-v2.wasm

demo: rules
	rm -rf demo/events
	$(TALLY) gen --events $(DEMO_EVENTS) --seed 42 --format parquet --out demo/events
	$(TALLY) run --input demo/events --rule $(RULES_DIR)/creator-pay-v1.wasm --out demo/out --report demo/report.json

# Debian's chromium, for the test that renders the HTML comparison report in a
# headless browser (the test fails, naming this target, when it is missing).
browser:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# The readers people use on Tally's output, for the test that reads every table
# with them (DuckDB, Polars and pyarrow from Python).
python-deps:
	@$(PYTHON) -c "import duckdb, polars, pyarrow" 2>/dev/null || \
		$(PYTHON) -m pip install --quiet duckdb==2.0.1 polars==2.1.0 pyarrow==26.0.1

# PostgreSQL's server programs, for the tests of `tally sink postgres` (each
# starts a server of its own in a temporary directory). Debian installs them
# in a directory per major version, /usr/lib/postgresql/<version>/bin.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)

# The Python package (host/python, a wheel built by maturin) and PySpark in
# the project's virtualenv .venv/, for `tally-spark` and its tests (which fail,
# naming this target, when it is missing); Java from Debian when missing.
VENV        := .venv
SPARK_PIP   := maturin==1.16.0 pyarrow==26.0.1 pyspark==4.3.0 pandas==2.3.3 numpy==2.4.6

spark:
	@command -v java >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y default-jre-headless)
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -c "import maturin, pyarrow, pyspark, pandas" 2>/dev/null || \
		$(VENV)/bin/python -m pip install --quiet $(SPARK_PIP)
	rm -rf target/wheels/tally-*.whl
	$(VENV)/bin/maturin build --release --manifest-path host/python/Cargo.toml --out target/wheels
	$(VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps target/wheels/tally-*.whl

test: rules browser python-deps postgres spark
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings
	$(CARGO) clippy --release --target $(WASM_TARGET) -p tally-rules-sdk -p creator-pay-v1 -p creator-pay-v2 -- -D warnings
	TALLY_CODE_CACHE=$(CURDIR)/target/test-cache/code TALLY_CACHE_KEY=$(CURDIR)/target/test-cache/cache.key \
		$(CARGO) test --workspace --release

bench: rules
	$(CARGO) bench -p tally-benches
