# Marque's front door. Every target installs and generates what it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
GENERATED := clients/python/.generated
PROTO_SOURCES := $(shell find protos -name '*.proto' 2>/dev/null)
# The Node.js client (clients/node): npm ci from its lock file, TypeScript generated from
# protos/ by tools/protogen.py (ts-proto), compiled to dist/.
NODE_DIR := clients/node
NODE_INSTALLED := $(NODE_DIR)/node_modules/.installed
NODE_BUILT := $(NODE_DIR)/build/.dist-built
NODE_SOURCES := $(wildcard $(NODE_DIR)/src/*.ts) $(NODE_DIR)/tsconfig.json $(NODE_DIR)/scripts/generate.js
NODE_ENV := MARQUE_PYTHON=$(abspath $(PY))

.PHONY: all venv protos run test test-node node dist test-postgres lint bench clean token k8s-check breaking

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

# pytest, then the Node client's tests. CI runs `make test` twice, on SQLite and on PostgreSQL
# (.ci/run); the Node tests check the client, not the database, so they run in the SQLite
# pass only: skipped when MARQUE_TEST_POSTGRES_URL is set (or with NODE_TESTS=0).
NODE_TESTS ?= 1
test: $(GENERATED)
	$(PY) -m pytest $(PYTEST_ARGS)
	@if [ -n "$$MARQUE_TEST_POSTGRES_URL" ] || [ "$(NODE_TESTS)" = 0 ]; then \
	  echo "node tests: skipped (MARQUE_TEST_POSTGRES_URL or NODE_TESTS=0; they run in the SQLite pass)"; \
	else $(MAKE) --no-print-directory test-node; fi

$(NODE_INSTALLED): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "clients/node needs Node.js 20+ and npm on PATH"; exit 1; }
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(NODE_BUILT): $(NODE_INSTALLED) $(INSTALLED) $(PROTO_SOURCES) tools/protogen.py $(NODE_SOURCES)
	cd $(NODE_DIR) && $(NODE_ENV) npm run -s build
	@mkdir -p $(@D) && touch $@

node: $(NODE_BUILT)

# The Node client's tests (node --test): a helper against an in-process grpc-js server, the
# packed package in an empty project, and a real lead and member (tests/clients/serve.py).
test-node: $(NODE_BUILT) $(GENERATED)
	cd $(NODE_DIR) && $(NODE_ENV) npm test -s

# Installable client packages in build/dist: the Python wheel (generated code inside; built
# by clients/python/setup.py) and the npm tarball.
dist: $(INSTALLED) $(NODE_BUILT)
	rm -rf build/dist && mkdir -p build/dist
	$(PY) -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps -w build/dist ./clients/python
	cd $(NODE_DIR) && npm pack -s --ignore-scripts --pack-destination ../../build/dist >/dev/null
	@ls build/dist

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
	rm -rf build var clients/python/buf $(GENERATED) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	@# generated packages; marque/client is hand-written
	find clients/python/marque -mindepth 1 -maxdepth 1 -type d ! -name client -exec rm -rf {} +
	rm -rf clients/python/build clients/python/*.egg-info $(NODE_DIR)/dist $(NODE_DIR)/build $(NODE_DIR)/src/gen
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(NODE_DIR)/node_modules
