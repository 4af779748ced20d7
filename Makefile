# Bulkhead: `make demo` runs the server with a demo fleet, `make test` runs the gates (lint, typecheck,
# importcheck: each also a target of its own) and every test.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := libgirepository1.0-dev libcairo2-dev pkg-config gcc rauc rauc-service squashfs-tools cryptsetup-bin postgresql nginx dbus curl e2fsprogs util-linux \
	podman runc docker-registry apache2-utils busybox-static time wrk swupdate libarchive13 \
	mmdebstrap qemu-system-x86 ovmf grub-efi-amd64-bin grub-common mtools dosfstools fdisk \
	xdelta3 casync zstd gnupg sqv nodejs chromium chromium-driver redis-server strace
PG_URL ?= postgresql://bulkhead:bulkhead@127.0.0.1:5432/bulkhead_test

.PHONY: setup demo test test-compose lint typecheck importcheck bench clean image images

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages (run as root or install them):$$missing"; fi; \
	fi
	@# npm runs the CSAF validator in the tests; NodeSource's nodejs carries its own, Debian's comes apart
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; } \
	  || echo "npm is missing (apt install npm): the CSAF mandatory tests will be skipped"
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(VENV)/bin/bulkhead demo --port 8080 --data-dir bulkhead-data

pg: setup
	@bash scripts/start-postgres.sh

lint: setup
	$(VENV)/bin/ruff check src tests bench

typecheck: setup
	$(VENV)/bin/mypy

importcheck: setup
	$(VENV)/bin/lint-imports

# The gates first (each its own target, so a failing one names itself), then every test.
test: setup lint typecheck importcheck
	@bash scripts/start-postgres.sh || echo "PostgreSQL could not be started: its tests will say so"
	BULKHEAD_TEST_PG_URL=$(PG_URL) $(VENV)/bin/pytest -n 2 --maxschedchunk 2 -q --durations 15 -m "not compose"

# The compose stack for real (tests/e2e/test_compose.py): its images' first build takes about 11 minutes, outside
# `make test`'s 40-minute budget; CI runs it after `make test` (.ci/run).
test-compose: setup
	$(VENV)/bin/pytest -q -m compose tests/e2e/test_compose.py

# Container images from Debian packages with mmdebstrap and Podman, as root (docs/deploy.md): the server's, or
# all those of contrib/compose/compose.yaml (server, PostgreSQL, Redis, nginx, SeaweedFS).
image: setup
	PYTHON=$(PY) bash scripts/build-images.sh server

images: setup
	PYTHON=$(PY) bash scripts/build-images.sh

bench: setup
	$(PY) bench/bundle_verify.py
	$(PY) bench/artifact_serving.py
	$(PY) bench/agent_footprint.py
	$(PY) bench/checkin.py

clean:
	rm -rf $(VENV) bulkhead-data .pytest_cache .mypy_cache .ruff_cache
