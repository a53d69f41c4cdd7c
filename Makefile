# Two commands do everything on a fresh machine with Python 3.10+:
#   make demo   set up .venv and train LeNet-5 end to end on scikit-learn's bundled digits (no download)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2

.PHONY: demo test install lint docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev,export,serve,tensorboard]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/milestones train lenet5 --data digits --out runs --name demo-lenet5-digits --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check milestones tests benchmarks
	$(BIN)/lint-imports

docs: $(STAMP)
	$(BIN)/milestones report models > docs/models.md
	$(BIN)/milestones report experiments > docs/experiments/README.md
	$(BIN)/python -m milestones.catalog

clean:
	rm -rf $(VENV) runs build *.egg-info
