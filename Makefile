# `make test` is what CI runs: install (locked), lint, format check, types, the test suite.
PYTHON ?= python3
UV_VERSION ?= 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install install-runtime system-deps browser-deps demo-deps demo test lint types unit integration e2e fmt bench fault-long clean

# Real peers the tests run, from Debian's packages (installed when missing and apt-get can,
# as root): Sisimai, the bounce classifier the tests compare ours with; Dovecot, the IMAP
# server the inbox daemon reads (a private instance per test session); postfix, the MTA a
# DKIM-signed message passes before it is verified; Chromium, the browser the console's tests
# drive (Playwright, pointed at /usr/bin/chromium: no browser download); docker-compose, the
# Compose client that resolves the compose files (no engine needed); dnsmasq, the private DNS
# server of the pre-flight and provider tests.
SYSTEM_PACKAGES := libsisimai-perl dovecot-imapd postfix chromium docker-compose dnsmasq-base

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV)
	$(UV) sync --locked --quiet

# What running the product needs, without the test tools (`--inexact`: tools already
# installed by `make install` stay).
install-runtime: $(UV)
	$(UV) sync --locked --no-dev --inexact --quiet

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: install
	$(BIN)/mypy

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else echo "missing Debian packages the tests need: $$missing"; fi; \
	fi

# The console's tests also run an OpenID provider and axe-core, from the npm registry
# (tests/browser/package-lock.json), with the machine's Node.js.
browser-deps:
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error

# `make demo`: the product on this machine without Docker (demo/__main__.py): PostgreSQL and
# RabbitMQ (installed and started when missing and apt-get can), the demo database, the
# daemons, the console with a development OpenID provider, and MailDev, a web inbox for the
# mail it sends. Ctrl-C stops it.
DEMO_PACKAGES := postgresql rabbitmq-server nodejs npm

demo-deps:
	@missing=$$(for p in $(DEMO_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && ! { command -v pg_isready && command -v node; } >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else echo "the demo needs: $$missing"; fi; \
	fi
	cd demo && npm ci --no-audit --no-fund --loglevel=error
	cd tests/browser && npm ci --omit=dev --no-audit --no-fund --loglevel=error

demo: install-runtime demo-deps
	$(BIN)/python -m demo

test: lint types system-deps browser-deps demo-deps
	$(BIN)/pytest -q -p no:cacheprovider

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

e2e: install
	$(BIN)/pytest -q tests/e2e

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The fast sink is postfix's smtp-sink, the HTTP load generator wrk; installed here when
# missing and apt-get can (root).
bench: install
	@command -v smtp-sink >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null; } \
		|| echo "smtp-sink not found: the bench falls back to aiosmtpd (server-bound)"
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; } \
		|| echo "wrk not found: POST /api/v1/emails is not measured"
	$(BIN)/python -m bench $(BENCH_ARGS)

# The fault suite's long form: SEED and DURATION (seconds of continuous faults) to choose.
SEED ?= $(shell python3 -c "import random; print(random.SystemRandom().randrange(1, 10**6))")
DURATION ?= 1200
# CLUSTER=1: against a three-node RabbitMQ cluster, a node at a time stopped or killed.
CLUSTER ?=
fault-long: install  ## needs rabbitmq-server and PostgreSQL's initdb (private instances)
	$(BIN)/python -m tests.fault --seed $(SEED) --duration $(DURATION) $(if $(CLUSTER),--cluster)

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .hypothesis
