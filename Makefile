# Shortcuts; the README's two commands are scripts/demo.sh and scripts/test.sh (no make needed).
.PHONY: demo test test-fast lint format bench-engine bench-media bench-quant

demo:
	scripts/demo.sh

test:
	scripts/test.sh

test-fast:
	scripts/test.sh -m "not slow"

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

bench-engine bench-media bench-quant:
	.venv/bin/python run_cluster.py bench $(subst bench-,,$@)
