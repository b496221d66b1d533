# The two entry points of the README. Both install what they need first.
.PHONY: demo test lint

demo:
	scripts/setup
	.venv/bin/hwlab doctor --device local
	.venv/bin/hwlab profile --device local --backend all --space spos --input-size 32

test:
	scripts/setup --dev
	.venv/bin/python -m pytest -q

lint:
	scripts/setup --dev
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
