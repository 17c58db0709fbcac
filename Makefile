# Two commands for a new user: `make run` and `make test`. Both create .venv from nothing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-kafka test-unit chaos soak lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(STAMP)
	$(BIN)/ats up

# Everything but the tests that start a local Apache Kafka themselves (marker `kafka`, Java and Maven).
test: $(STAMP)
	$(BIN)/pytest -m "not kafka"

# The integration suites again, on Apache Kafka 4.x (KRaft) from Maven Central (needs Java 17+ and Maven;
# the jars are resolved once into .ats/kafka-<version>).
test-kafka: $(STAMP)
	ATS_TEST_BROKER=kafka $(BIN)/pytest tests/integration

# Faults survived against real processes (pytest marker `chaos`): kill -9 and takeover, broker down 30 s
# (always on Apache Kafka), cache flushed or restarted, poison, an offline store, a soak of
# ATS_CHAOS_SOAK_SECONDS (default 60; 600 for the real ten minutes). Figures go to .ats/chaos-report.jsonl.
chaos: $(STAMP)
	$(BIN)/pytest -m chaos tests/integration

# The ten-minute soak: the peak simulator's soak profile (the whole event mix at a steady rate one worker
# holds, a flash sale) on the embedded defaults; exit 1 unless memory stayed flat, the lag bounded and no
# worker logged an ERROR. Report and charts in .ats/reports/.
soak: $(STAMP)
	$(BIN)/ats simulate --profile soak --require-health

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check availability cacheclient streams api simulation tests benchmarks
	$(BIN)/mypy availability cacheclient streams api simulation
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .ats .pytest_cache .mypy_cache .ruff_cache
