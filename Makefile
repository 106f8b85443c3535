# bascule: the two entry points are `make demo` (a full local rehearsal) and `make test`;
# `make lint`, `make typecheck` and `make test-fast` are the quick loop (venv only).
# Both install what they need first (Debian packages when run as root, the Python venv,
# Azurite through npm), so they work on a fresh machine.

# The venv's interpreter: Debian's CPython 3.11 where it can make a venv, else the first
# python3 on PATH; PYTHON=... overrides it. An existing .venv is kept: remove it and run
# `make setup` to make it again. Debian's build links libpython into the executable;
# pyenv's default build (shared libpython, no profile-guided optimisation) ran bascule's
# per-object work 1.2x slower on one 2-core host, with the same packages (20,000 tiny
# files: 4.18 s and 7.95 CPU s against 3.44 s and 6.49; see benchmarks/README.md).
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip' >/dev/null 2>&1 && echo /usr/bin/python3.11 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STATE ?= .bascule/sandbox
PYTEST_ARGS ?=
# The suite runs in PYTEST_WORKERS processes (pytest-xdist), each taking whole test files, so
# a module's fixture (a sandbox, a migrated project) starts once; every worker starts its own
# emulators on free ports. PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: setup system-deps venv demo test test-fast lint typecheck bytecode clean

system-deps:
	@bash scripts/system-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

venv: $(VENV)/.installed

setup: system-deps venv node_modules/.installed

LINTED := $(wildcard bascule tests benchmarks stacks)

# lint, typecheck and test-fast need only the venv (no root, no Debian packages, no servers).
lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

# The CLI tests start `bascule` a few hundred times: its bytecode is written once, up front,
# even where PYTHONDONTWRITEBYTECODE is set (each start would compile the package again).
bytecode: venv
	$(BIN)/python -m compileall -q bascule

test: setup lint typecheck bytecode
	$(PYTEST) $(PYTEST_ARGS)

# Everything that needs no emulator and is not marked slow: the inner dev loop.
test-fast: venv bytecode
	$(PYTEST) -m "not servers and not slow" $(PYTEST_ARGS)

demo: setup
	@bash scripts/demo.sh "$(STATE)"

clean:
	-$(BIN)/bascule sandbox down --state-dir $(STATE)
	rm -rf .bascule
