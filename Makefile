VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-clocks lint bench clean translations lock audit

$(PY):
	python3 -m venv $(VENV)

# every package, the build backend included, from the lock and only if its hash matches; then the project itself
$(STAMP): requirements-dev.lock pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## lock: pin pyproject.toml's dependencies and the build backend with hashes (the dev lock keeps the runtime pins);
## current pins stay unless LOCK_ARGS says otherwise: make lock LOCK_ARGS=--upgrade (or --upgrade-package NAME)
LOCK_ARGS ?=
LOCK := $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform linux \
	--custom-compile-command 'make lock' $(LOCK_ARGS)
BUILD_REQUIRES := setuptools>=69
lock: $(STAMP)
	echo '$(BUILD_REQUIRES)' | $(LOCK) pyproject.toml - -o requirements.lock
	echo '$(BUILD_REQUIRES)' | $(LOCK) pyproject.toml - --extra dev -c requirements.lock -o requirements-dev.lock

## run: create .venv and .env if needed, migrate the database and start the bot
run: $(STAMP)
	@test -f .env || $(VENV)/bin/coupang-keybot init
	$(VENV)/bin/coupang-keybot db upgrade
	$(VENV)/bin/coupang-keybot serve

## test: the whole suite (PostgreSQL tests need DATABASE_URL_TEST or 127.0.0.1:5432)
test: $(STAMP)
	$(PY) -m pytest

# the modules whose tests read the real clock (tests/clock.py): `make test-clocks` runs them at fixed instants and
# shifted days, so a test that depends on the day fails the day it is written, not in CI a week later
CLOCK_MODULES := tests/test_ops_monitoring.py tests/test_slack_home.py tests/test_slack_keys.py tests/test_console.py \
	tests/test_console_cli.py tests/test_coupang.py
CLOCK_INSTANTS := 2026-12-14T10:00+09:00 2026-12-15T23:59:30+09:00 2026-12-16T00:00:30+09:00
CLOCK_SHIFTS := 30 180 365

## test-clocks: the date-sensitive modules on a Monday 10:00 in Seoul, around Seoul midnight, +30/+180/+365 days
test-clocks: $(STAMP)
	@set -e; for at in $(CLOCK_INSTANTS); do echo "== KEYBOT_TEST_NOW=$$at"; \
		KEYBOT_TEST_NOW=$$at $(PY) -m pytest -p no:cacheprovider $(CLOCK_MODULES); done; \
	for days in $(CLOCK_SHIFTS); do echo "== KEYBOT_TEST_SHIFT_DAYS=$$days"; \
		KEYBOT_TEST_SHIFT_DAYS=$$days $(PY) -m pytest -p no:cacheprovider $(CLOCK_MODULES); done

lint: $(STAMP)
	$(VENV)/bin/ruff check bot storage tests bench
	$(VENV)/bin/ruff format --check bot storage tests bench
	$(VENV)/bin/mypy bot storage

# what marks English source text for translation (tests/test_i18n.py extracts with the same keywords)
I18N_KEYWORDS := -k t:2 -k N_ -k Msg -k KeybotError -k ConfigError -k NotAllowed -k NotFound -k Unavailable -k one:2 -k checked:2 -k hint

## translations: re-extract English text, merge it into bot/locale/*/messages.po, compile the .mo files
translations: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg --no-default-keywords $(I18N_KEYWORDS) --no-location --sort-output \
		--omit-header --project=coupang-keybot -o bot/locale/messages.pot .
	$(VENV)/bin/pybabel update -i bot/locale/messages.pot -d bot/locale -D messages --no-fuzzy-matching --ignore-obsolete
	$(VENV)/bin/pybabel compile -d bot/locale -D messages --statistics

## audit: pip-audit over the lock files; a known vulnerability fails (skipped with a note when no database answers)
audit: $(STAMP)
	$(PY) .ci/audit.py requirements.lock requirements-dev.lock

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
