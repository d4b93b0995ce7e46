# The two commands: `make run` (whole stack on the bundled sample) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-unit venv infra browser audit docs lint lock pin-images bench schemas clean

run: venv infra
	$(BIN)/python -m devtools stack

test: venv infra browser audit docs lint
	$(BIN)/pytest -q

# The unit layer only (no server, no browser; tests/conftest.py marks the layers), on two workers (pytest-xdist):
# 20 s, against 30 s on one.
test-unit: venv
	$(BIN)/pytest -q -m unit -n 2

# Lint, format and types (configured in pyproject.toml; .pre-commit-config.yaml runs the same before a commit).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock requirements-test.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements.lock -r requirements-test.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --config-settings editable_mode=compat -e .
	touch $@

# The documentation site (mkdocs.yml, docs/) into var/site; strict: a broken link or anchor, or a page left out of
# the nav, fails. Not -q: it hides the warnings from the strict count, and a broken link would pass.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d var/site

# Known vulnerabilities with a fix released, in either lock, fail the build (deploy/audit.py, pip-audit).
audit: venv
	$(BIN)/python deploy/audit.py

# Both locks, with hashes, from pyproject.toml: the versions already locked are kept (`make lock UPGRADE=--upgrade`
# moves them); the test lock holds what the [test] extra adds to the runtime lock, at the runtime lock's versions.
lock: venv
	$(BIN)/uv pip compile pyproject.toml --python $(BIN)/python --generate-hashes --no-header -q $(UPGRADE) \
	  -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra test -c requirements.lock --python $(BIN)/python --generate-hashes \
	  --no-header -q $(UPGRADE) $$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/--no-emit-package \1/p' requirements.lock) \
	  -o requirements-test.lock

# On a Docker host: pin every image of docker-compose.yml to the digest its tag has now (tag@sha256:...).
pin-images:
	for image in $$(sed -n 's/^ *image: *\([^@ ]*\) *$$/\1/p' docker-compose.yml | sort -u); do \
	  docker pull -q "$$image" >/dev/null && digest=$$(docker image inspect --format '{{index .RepoDigests 0}}' "$$image") && \
	  sed -i "s|image: $$image *$$|image: $$image@$${digest#*@}|" docker-compose.yml || exit 1; \
	done

# Kafka and QuestDB jars from Maven Central into the cache (checksummed; downloads once).
infra: venv
	$(BIN)/python -m devtools infra fetch

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
