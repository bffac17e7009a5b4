# edgeocr — the two set-up commands are `make run` and `make test` (see README.md).
.PHONY: run test test-device test-convert setup setup-convert bench

setup:
	./scripts/setup.sh

setup-convert:
	./scripts/setup.sh --convert

# Install the device stack, read one bundled frame's meter region, then run the daemon demo on the
# bundled frames (replay source; publishes too if a broker answers on 127.0.0.1:1883).
run: setup
	.venv/bin/edgeocr read firmware_config/samples/frames/frame-000.png --box 66,30,308,72 --chars 0123456789. --json
	.venv/bin/edgeocr run --max-frames 16

# Install both stacks (device and workstation) and run the whole test suite.
test: setup-convert test-device test-convert

test-device:
	.venv/bin/python -m pytest -q -m "not convert" tests

test-convert:
	.venv-convert/bin/python -m pytest -q -m convert tests

bench: setup
	.venv/bin/python bench/peers.py
