# Set-up is part of every target: a fresh clone needs only `make search` or `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Which PyTorch build to install (constraints.txt pins the version, not the build):
#   TORCH=cpu   (default) from PyTorch's CPU wheel index (torch ~200 MB): on Linux, PyPI's own torch
#               is the CUDA build with ~20 nvidia-* packages (several GB), which a CPU-only machine
#               never uses. If that index cannot be reached (an offline mirror, a firewall), set-up
#               says so and takes torch from PyPI or the local wheels in your pip configuration.
#   TORCH=cuda  PyPI's default build (CUDA 12 on Linux x86_64): for NVIDIA GPU machines.
#   TORCH=cu126 (cu128, ...) that CUDA version from PyTorch's index.
#   TORCH=pip   no extra index: whatever your pip configuration provides.
# Changing TORCH after set-up needs `make clean` first.
TORCH ?= cpu
TORCH_INDEX_URL ?= https://download.pytorch.org/whl
ifeq ($(TORCH),cpu)
  TORCH_INDEX := $(TORCH_INDEX_URL)/cpu
else ifeq ($(filter cuda pip,$(TORCH)),$(TORCH))
  TORCH_INDEX :=
else ifeq ($(filter cu1%,$(TORCH)),$(TORCH))
  TORCH_INDEX := $(TORCH_INDEX_URL)/$(TORCH)
else
  $(error TORCH=$(TORCH): expected cpu, cuda, cu126 (or another CUDA version) or pip)
endif

.PHONY: search test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	idx="$(TORCH_INDEX)"; \
	if [ -n "$$idx" ] && ! $(PY) -c "import urllib.request as u; u.urlopen('$$idx/torch/', timeout=10)" 2>/dev/null; then \
	  echo "note: $$idx cannot be reached; torch comes from PyPI or your pip configuration instead (TORCH=pip silences this)"; idx=""; \
	fi; \
	$(PY) -m pip install -q $${idx:+--extra-index-url $$idx} -c constraints.txt -e ".[dev]"
	$(PY) -c "import torch; print('torch', torch.__version__, '(CUDA ' + str(torch.version.cuda) + ')' if torch.version.cuda else '(CPU build)')"
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
