# edgeocr — the two set-up commands are `make run` and `make test` (see README.md).
.PHONY: run test test-device test-convert setup setup-convert bench

setup:
	./scripts/setup.sh

setup-convert:
	./scripts/setup.sh --convert

# Install the device stack and run the daemon demo on the bundled sample frames (replay source).
run: setup
	.venv/bin/edgeocr read firmware_config/samples
	.venv/bin/edgeocr run --max-frames 8

# Install both stacks (device and workstation) and run the whole test suite.
test: setup-convert test-device test-convert

test-device:
	.venv/bin/python -m pytest -q -m "not convert" tests

test-convert:
	.venv-convert/bin/python -m pytest -q -m convert tests

bench: setup
	.venv/bin/python bench/peers.py
