# Two commands: `make run` sets up and runs the bot, `make test` sets up and runs every test (on both engines).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run console test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vipbot run

console: $(STAMP)
	$(VENV)/bin/vipbot console

# The suite on SQLite, then on PostgreSQL when one answers at VIPBOT_TEST_POSTGRES_URL (tests/run_engines.sh).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	VENV=$(VENV) tests/run_engines.sh

bench: $(STAMP)
	$(VENV)/bin/python bench/checkin_throughput.py

clean:
	rm -rf $(VENV) data/*.db*
