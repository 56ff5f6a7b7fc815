# The two set-up-and-go commands: `make reproduce` (main job) and `make test`. Each creates/updates .venv.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PROFILE ?= cpu
export MPLBACKEND := Agg
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv test reproduce lab clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[notebooks,dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check vilbert_lite tests studies tools notebooks/solutions
	$(BIN)/ruff format --check vilbert_lite tests studies tools notebooks/solutions
	$(BIN)/python -m pytest

# a checkpoint every 200 steps in every run: a stopped reproduction loses at most that much of each run in flight
reproduce: $(STAMP)
	VILBERT_LITE_CKPT_EVERY=$${VILBERT_LITE_CKPT_EVERY:-200} $(BIN)/python -m vilbert_lite.repro.reproduce --profile $(PROFILE)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) runs .cache .pytest_cache .ruff_cache
