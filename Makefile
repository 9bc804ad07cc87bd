# Set-up and checks on a fresh Debian machine (run as root for the kernel and BIRD tests).
#   make test   installs apt packages and the venv, then runs lint, type checks and the tests
#   make lab    installs the same, then runs the lab's default scenario
PYTHON ?= python3
VENV   ?= .venv
APT_PACKAGES = iptables ipset bird2 iproute2 iputils-ping netcat-openbsd conntrack docker-compose
PYTEST_ARGS ?=

.PHONY: deps apt venv lint test lab proto clean

deps: apt venv

apt:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	else echo "not root or no apt-get: skipping apt packages (root-only tests will skip)"; fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy vppagent felix_shim

test: deps lint
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc = 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

lab: deps
	$(VENV)/bin/vppagent lab run

proto: venv
	$(VENV)/bin/python scripts/gen_proto.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
