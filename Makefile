# The two entry points of the README. Both install what they need first.
.PHONY: demo test lint

demo:
	scripts/setup
	.venv/bin/hwlab doctor --device local
	.venv/bin/hwlab profile --device local --backend all --space spos --input-size 32

# Two worker processes, each taking whole modules (CI has two cores); WORKERS=0 runs in this process.
WORKERS ?= 2

test:
	scripts/setup --dev
	.venv/bin/python -m pytest -q -n $(WORKERS) --dist loadscope

lint:
	scripts/setup --dev
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
