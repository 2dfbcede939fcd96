# kernel-magnifier: two commands on a fresh machine
#   make demo   set up .venv and draw the bundled real recording into demo/
#   make test   lint and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_INPUT := tests/data/record-demo-dat/kernel-magnifier.data.xz
# make vm-test: record on a real Debian kernel under QEMU (downloaded once, never installed)
KERNEL_PACKAGE ?= linux-image-6.1.0-56-amd64-unsigned
KERNEL_SUITE ?=
KERNEL_DIR = $(VM_CACHE)/$(firstword $(KERNEL_PACKAGE))
VM_CACHE ?= $(HOME)/.cache/kernel-magnifier/vm
NEWER_KERNEL := linux-binary-7.3.4+deb13-amd64 linux-modules-7.3.4+deb13-amd64 linux-base-7.3.4+deb13-amd64
VM_TESTS ?= tests/vm
# the VM tests take 18-40 minutes of emulated time on this 2-core machine (a tracer switch costs 5-15 s);
# the whole suite boots two guests at once (tests/vm/vm-test.sh): the loss comparison with trace-cmd runs beside the rest
VM_TIMEOUT ?= 3600

.PHONY: demo test lint bench images vm-test vm-test-newer vm-test-matrix vm-demo vm-demo-large vm-demo-system clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	mkdir -p demo
	$(PY) kernel-magnifier.py visualize -i $(DEMO_INPUT) --symbol-map tests/data/symbol-map-6.1.0-56-amd64.map.xz --max-nodes 40 --max-edges 80 -o demo/kernel-magnifier.pdf --chart demo/function-calls.png
	@echo "open demo/kernel-magnifier.pdf and demo/function-calls.png"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check kernel-magnifier.py tests bench

test: lint
	$(PY) -m pytest -q -n auto tests --ignore=tests/vm

vm-test: $(VENV)/.installed
	tests/vm/fetch-kernel.sh $(if $(KERNEL_SUITE),--suite $(KERNEL_SUITE)) $(KERNEL_DIR) $(KERNEL_PACKAGE)
	mkdir -p $(VM_CACHE)/out
	tests/vm/vm-test.sh --kernel $(KERNEL_DIR) --out $(VM_CACHE)/out --timeout $(VM_TIMEOUT) --python $(abspath $(PY)) $(VM_TESTS)

# the same checks on Debian's newer 7.3 kernel (trixie-backports: function_graph in instances, funcgraph-args)
vm-test-newer:
	$(MAKE) vm-test KERNEL_SUITE=trixie-backports KERNEL_PACKAGE="$(NEWER_KERNEL)"

# the kernel matrix's smoke (README: Kernels): record every way on Debian 5.10, 6.1, 6.12, 7.3 (x86_64) and 6.12 arm64
# (4 KB and 16 KB pages, qemu-system-aarch64), two guests at a time; MATRIX_KERNELS=NAME...: only those; MATRIX_LOSS=no:
# without the loss comparison with trace-cmd (tests/vm/vm-test-matrix.sh). The table goes to $(VM_CACHE)/matrix/matrix-table.md
MATRIX_KERNELS ?=
MATRIX_LOSS ?= yes
vm-test-matrix: $(VENV)/.installed
	tests/vm/vm-test-matrix.sh --cache $(VM_CACHE) --out $(VM_CACHE)/matrix --python $(abspath $(PY)) $(if $(filter no,$(MATRIX_LOSS)),--no-loss) $(MATRIX_KERNELS)

# the README walkthrough's recording: record on the real kernel with a loopback TCP echo running
vm-demo: $(VENV)/.installed
	tests/vm/fetch-kernel.sh $(KERNEL_DIR) $(KERNEL_PACKAGE)
	mkdir -p $(VM_CACHE)/demo
	tests/vm/run-in-vm.sh --kernel $(KERNEL_DIR) --out $(VM_CACHE)/demo -- tests/vm/record-demo.sh
	@echo "recording and record's output in $(VM_CACHE)/demo"

# the same recording with 64 KiB echo messages: the README's --baseline example compares the two
vm-demo-large: $(VENV)/.installed
	tests/vm/fetch-kernel.sh $(KERNEL_DIR) $(KERNEL_PACKAGE)
	mkdir -p $(VM_CACHE)/demo-large
	tests/vm/run-in-vm.sh --kernel $(KERNEL_DIR) --out $(VM_CACHE)/demo-large -- tests/vm/record-demo.sh 65536
	@echo "recording and record's output in $(VM_CACHE)/demo-large"

# a whole-system recording under a mixed load (TCP echo, ext4 writes with fsync, process spawns): the README's subsystem map
vm-demo-system: $(VENV)/.installed
	tests/vm/fetch-kernel.sh $(KERNEL_DIR) $(KERNEL_PACKAGE)
	mkdir -p $(VM_CACHE)/demo-system
	tests/vm/run-in-vm.sh --kernel $(KERNEL_DIR) --out $(VM_CACHE)/demo-system -- tests/vm/record-whole-system.sh $(KERNEL_DIR)
	@echo "recording and record's output in $(VM_CACHE)/demo-system"

# the README's images, redrawn from the bundled recordings with the README's own commands
images: $(VENV)/.installed
	docs/make-images.sh $(PY)

bench: $(VENV)/.installed
	$(PY) bench/bench.py

clean:
	rm -rf demo .pytest_cache
