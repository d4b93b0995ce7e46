# The two commands: `make run` (whole stack on the bundled sample) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test venv infra browser bench schemas clean

run: venv infra
	$(BIN)/flashes stack

test: venv infra browser
	$(BIN)/pytest -q

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --config-settings editable_mode=compat -e .
	touch $@

# Kafka and QuestDB jars from Maven Central into the cache (checksummed; downloads once).
infra: venv
	$(BIN)/flashes infra fetch

# Debian's Chromium for the browser tests (tests/test_pages.py); Playwright never downloads browsers of its own.
browser:
	@[ -x /usr/bin/chromium ] || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

bench: venv infra
	$(BIN)/python bench/pipeline_throughput.py
	$(BIN)/python bench/relevance_scoring.py

# Re-export the JSON Schemas after changing a model in schemas/.
schemas: venv
	$(BIN)/flashes schemas export

clean:
	rm -rf var
