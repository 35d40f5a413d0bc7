# perphedge — `make demo` (set up + plan the example portfolio + backtest it on the bundled sample history),
# `make test` (set up + all checks). Both create .venv and install the locked dependencies on first use;
# nothing else is needed beyond Python 3.11+, git and make, and after that no network.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := out/demo
SAMPLE_MANIFEST := src/perphedge/data/sample_data/manifest.json

.PHONY: demo test lint typecheck imports unit bench clean setup sample

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "perphedge needs Python 3.11 or newer on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)

# The demo: plan the example portfolio, then backtest the same hedge on the sample history bundled with
# the package (imported once into out/demo/market.duckdb), writing out/demo/altcoins-inverse-buy/.
demo: $(STAMP) $(DEMO)/market.duckdb
	$(BIN)/perphedge plan examples/altcoins.yaml
	$(BIN)/perphedge backtest runs/altcoins-inverse-buy.yaml --store $(DEMO)/market.duckdb --out $(DEMO)/altcoins-inverse-buy
	@echo "demo report: $(DEMO)/altcoins-inverse-buy/report.html"

# Imported to a temporary name and renamed: an interrupted import never leaves a half store behind.
$(DEMO)/market.duckdb: $(SAMPLE_MANIFEST) | $(STAMP)
	@mkdir -p $(DEMO)
	@rm -f $@.tmp $@.tmp.wal
	$(BIN)/perphedge data import --sample --store $@.tmp --format json > /dev/null
	@mv $@.tmp $@
	@echo "imported the bundled sample history into $@"

# Rebuild the bundled sample from ../shared/data (maintainers; deterministic).
sample: $(STAMP)
	$(BIN)/python -m perphedge.data.sample build $${PERPHEDGE_SAMPLE_DATA:-../shared/data}

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck imports unit

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_plan.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis out
