# kernel-magnifier: two commands on a fresh machine
#   make demo   set up .venv and draw the bundled real recording into demo/
#   make test   lint and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_INPUT := tests/data/fg-graphfunc/trace.txt.xz

.PHONY: demo test lint bench vm-test docs-images clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	mkdir -p demo
	$(PY) kernel-magnifier.py visualize -i $(DEMO_INPUT) --symbol-map tests/data/symbol-map-6.1.0-56-amd64.map.xz -o demo/kernel-magnifier.pdf --chart demo/function-calls.png
	@echo "open demo/kernel-magnifier.pdf and demo/function-calls.png"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check kernel-magnifier.py tests bench

test: lint
	$(PY) -m pytest -q tests

bench: $(VENV)/.installed
	$(PY) bench/bench.py

clean:
	rm -rf demo .pytest_cache
