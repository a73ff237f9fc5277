# Marque's front door. Every target installs and generates what it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
GENERATED := clients/python/.generated
PROTO_SOURCES := $(shell find protos -name '*.proto' 2>/dev/null)

.PHONY: all venv protos run test test-postgres lint bench clean token k8s-check breaking

all: test

$(INSTALLED): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	@# The repository root and the generated clients are importable without packaging.
	$(PY) -c "import site,pathlib; r=pathlib.Path('.').resolve(); pathlib.Path(site.getsitepackages()[0],'marque-dev.pth').write_text(f'{r}\n{r/\"clients\"/\"python\"}\n')"
	@touch $@

venv: $(INSTALLED)

$(GENERATED): $(INSTALLED) $(PROTO_SOURCES) tools/protogen.py
	$(PY) tools/protogen.py
	@touch $@

protos: $(GENERATED)

run: $(GENERATED)
	$(PY) -m mesh.launcher

token: $(GENERATED)
	@$(PY) -m mesh.token $(ARGS)

test: $(GENERATED)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(GENERATED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/buf lint build/image.binpb --path marque --config protos/buf.yaml

# Compares the contracts with those of a git revision (default: the previous commit).
AGAINST ?= HEAD~1
breaking: $(GENERATED)
	$(PY) tools/breaking.py --against $(AGAINST)

# Offline deployment checks: generated manifests up to date, kustomize render + strict schema
# validation, per-service shape, dashboards, alert rules (promtool), Dockerfile. Also part of
# `make test` (tests/deploy). Missing kubectl/promtool is reported as SKIP with the reason.
k8s-check: $(INSTALLED)
	$(PY) tools/k8s_check.py

# The mesh bench prefers h2load (Debian's nghttp2-client), a load generator that is not Python.
bench: $(GENERATED)
	@command -v h2load >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq nghttp2-client) >/dev/null 2>&1; } || echo "bench: h2load unavailable, the mesh bench uses a Python load client"
	$(PY) -m bench

clean:
	rm -rf build var clients/python/buf clients/python/marque/*/ $(GENERATED) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
