# One command for the demo, one for the tests; both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# pytest-xdist processes for the tests (0: all in this one); two halve the run's time on a 2-core machine
PYTEST_WORKERS ?= 2
export LANGSMITH_TRACING = false

.PHONY: demo test install install-test system-deps eval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python system-deps
	$(BIN)/pip install --quiet -e '.[test]'

system-deps:
	bash scripts/install-system-deps.sh

demo: install
	$(BIN)/incident-copilot demo --scenario deployment_regression --yes

test: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

eval: install
	$(BIN)/incident-copilot eval --seeds 10

clean:
	rm -rf $(VENV) output
