# Everything a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config/cadence.yaml
CHROMIUM := $(shell command -v chromium 2>/dev/null)

.PHONY: run test test-future test-browser lint types layers unit venv plan validate examples bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/cadence run --config $(CONFIG)

validate: $(STAMP)
	$(BIN)/cadence validate --config $(CONFIG)

plan: $(STAMP)
	$(BIN)/cadence plan --config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check daemon tests benchmarks docs
	$(BIN)/ruff format --check daemon tests benchmarks docs

types: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# The tests on up to four cores (pytest-xdist); each worker starts its own servers.
unit: $(STAMP)
	$(BIN)/pytest -n auto --maxprocesses 4

# Pages in a real headless chromium: the HTML report, and the pre-read form filled and saved
# (playwright driving the system's chromium; no browser is downloaded). `make test` runs them
# where chromium is installed. Screenshots land in var/.
$(VENV)/.browser: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,browser]'
	touch $@

test-browser: $(VENV)/.browser
	$(BIN)/pytest -m browser

test: lint types layers unit $(if $(CHROMIUM),test-browser)

# The suite under clocks moved ahead (libfaketime: `apt-get install faketime`), to prove it gives
# the same answer on any date. Not part of `make test`: it runs the tests three times.
test-future: $(STAMP)
	@command -v faketime >/dev/null || { echo "make test-future needs faketime (apt-get install faketime)" >&2; exit 2; }
	@$(BIN)/python tests/clock_shifts.py | while IFS='|' read -r key label; do \
		spec=$$($(BIN)/python tests/clock_shifts.py $$key); \
		echo "== the suite with the clock at $$label (faketime -f '$$spec')"; \
		faketime -f "$$spec" $(BIN)/pytest -n auto --maxprocesses 4 -p no:cacheprovider || exit 1; \
	done

examples: $(STAMP)
	$(BIN)/python docs/generate_examples.py

# A year of simulated days on 20 seeds under faults (tests/soak/); `make test` runs a quarter
# (and a fortnight on Google and on Outlook). SOAK_PROVIDER=google or outlook soaks those instead.
SOAK_PROVIDER ?= caldav
soak: $(STAMP)
	$(BIN)/python -m tests.soak --provider $(SOAK_PROVIDER) --days 365 --seeds 20

bench: $(STAMP)
	$(BIN)/python benchmarks/plan_scale.py
	$(BIN)/python benchmarks/reconcile_scale.py
	$(BIN)/python benchmarks/hung_server.py
	$(BIN)/python benchmarks/failing_api.py
	$(BIN)/python benchmarks/cli_scale.py
	$(BIN)/python benchmarks/graph_scale.py
	$(BIN)/python benchmarks/google_scale.py
	$(BIN)/python benchmarks/report_scale.py
	$(BIN)/python benchmarks/status_cost.py
	$(BIN)/python benchmarks/prep_form.py
	$(BIN)/python benchmarks/metrics_scale.py
	$(BIN)/python benchmarks/crm_scale.py 1000

clean:
	rm -rf $(VENV) var/ .pytest_cache .mypy_cache .ruff_cache .hypothesis
