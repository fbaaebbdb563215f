# The two commands of the README. Both set everything up from nothing: the virtualenv,
# pinned CPU torch (installed first, so no CUDA build is ever pulled), the package with
# the bundled model and the local ES-compatible server, and (for tests) Debian's Chromium.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(TORCH_VERSION)
DATASET ?=
PYTEST_ARGS ?=

# The debug UI test drives Debian's chromium through chromedriver.
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[bundled,localdev,dev]'
	touch $@

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m es_integration demo $(if $(DATASET),--dataset $(DATASET))

$(CHROMEDRIVER):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver

# The split-front tests run Debian's nginx as a process of their own (tests/split_front). On a
# systemd host the package also enables and starts a system nginx on port 80: stopped again.
NGINX := /usr/sbin/nginx

$(NGINX):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx
	if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now nginx.service; fi

lint: $(STAMP)
	$(BIN)/ruff format --check sidecar es_integration devtools tests
	$(BIN)/ruff check sidecar es_integration devtools tests
	$(BIN)/mypy sidecar es_integration devtools

# The differential suite drives the official Node client (tests/wire/node, lock file
# committed, node_modules ignored); Debian's nodejs and npm where there is no node yet.
NODE_CLIENT := tests/wire/node/node_modules/.package-lock.json

$(NODE_CLIENT): tests/wire/node/package-lock.json
	command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	cd tests/wire/node && npm ci --no-audit --no-fund --silent
	touch $@

test: $(STAMP) $(CHROMEDRIVER) $(NGINX) $(NODE_CLIENT) lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .local-es .pytest_cache .mypy_cache .ruff_cache tests/wire/node/node_modules
