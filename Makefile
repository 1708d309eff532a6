# Set-up is part of every target: a fresh clone needs only `make search` or `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: search test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# constraints.txt pins torch to the CPU wheel; unpinned, pip fetches a multi-GB CUDA build
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

search: $(STAMP)
	$(VENV)/bin/nas search --out runs/default

# CI (.ci/run) calls `make test`: lint first, so a lint or format error fails CI.
test: lint
	bash scripts/ensure-postgres.sh
	$(PY) -m pytest -q

LINTED := nas tests benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
