# One command for the demo, one for the tests; both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
export LANGSMITH_TRACING = false

.PHONY: demo test install install-test lint eval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

demo: install
	$(BIN)/incident-copilot demo --scenario deployment_regression --yes

test: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest -q

eval: install
	$(BIN)/incident-copilot eval --seeds 10

clean:
	rm -rf $(VENV) output
