# voiceprompt: `make demo` sets up and renders a reminder; `make test` runs ruff, mypy and pytest.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := ffmpeg espeak-ng festival festvox-us-slt-hts asterisk-core-sounds-en-wav chromium
# The demo reminder is for tomorrow at 16:47 in the demo tenant's zone, worked out once per run of
# make (an appointment in the past never rings); the preview pretends it is now, in that zone.
DEMO_TZ := America/New_York
DEMO_TIMES = $(eval DEMO_TIMES := $(shell $(PYTHON) -c 'from datetime import datetime, timedelta; \
  from zoneinfo import ZoneInfo; now = datetime.now(ZoneInfo("$(DEMO_TZ)")); \
  print(f"{now.date() + timedelta(days=1)}T16:47", now.strftime("%Y-%m-%dT%H:%M"))'))$(DEMO_TIMES)
DEMO_AT ?= $(word 1,$(DEMO_TIMES))
DEMO_NOW ?= $(word 2,$(DEMO_TIMES))
# Worded for the demo voice: the date and time get a sentence of their own, recorded whole;
# only the sentence with the names (and the voicemail's "Please call us...") needs text-to-speech.
DEMO_HUMAN := Hello. This is a reminder from {tenant} for your appointment with {provider}. \
  {appointment:date}, at {appointment:time}.
DEMO_VOICEMAIL := $(DEMO_HUMAN) Please call us if you need to change it. Thank you. Goodbye.
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: setup system-packages demo demo-render serve test lint typecheck pytest bench clean

# Debian packages: ffmpeg (pydub's decoder for OGG/M4A), festival with the female US voice slt
# (the local stand-in for Twilio's <Say> in previews, closest to a female actor: bench/tts.py;
# espeak-ng is the fallback), the Asterisk English prompts (a human voice for the demo and tests)
# and Chromium (the console's browser tests drive it headless through Playwright; never run
# `playwright install`, which downloads a browser of its own).
system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/voiceprompt: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

setup: system-packages $(BIN)/voiceprompt

demo: demo-render
	@echo "Console: sign in at http://$(HOST):$(PORT)/ with the admin token in var/demo/admin-token"
	VOICEPROMPT_ADMIN_TOKEN="$${VOICEPROMPT_ADMIN_TOKEN:-$$(cat var/demo/admin-token)}" \
	  $(BIN)/voiceprompt serve --host $(HOST) --port $(PORT)

# Import the Asterisk voice, create the demo tenant and one reminder (once), render its MP3, and
# make a random admin token for the console (kept in var/, never committed).
demo-render: setup
	$(BIN)/voiceprompt db upgrade
	$(BIN)/voiceprompt bank import-asterisk
	$(BIN)/voiceprompt tenant create demo --name "Smile Dental" --timezone $(DEMO_TZ) \
	  --template-human '$(DEMO_HUMAN)' --template-voicemail '$(DEMO_VOICEMAIL)' --if-missing
	@mkdir -p var/demo
	@[ -s var/demo/admin-token ] || $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(24))" > var/demo/admin-token
	@[ -s var/demo/reminder-created ] || { $(BIN)/voiceprompt remind --tenant demo --to "+1 415 555 0134" \
	  --at $(DEMO_AT) --provider "Doctor Benedict" > var/demo/reminder-created && cat var/demo/reminder-created; }
	$(BIN)/voiceprompt preview --tenant demo --at $(DEMO_AT) --provider "Doctor Benedict" \
	  --now $(DEMO_NOW) --out var/demo/reminder.mp3

serve: setup
	$(BIN)/voiceprompt serve --host $(HOST) --port $(PORT)

test: setup lint typecheck pytest

lint:
	$(BIN)/ruff check prompts voicebank server tests bench
	$(BIN)/ruff format --check prompts voicebank server tests bench

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/plan.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/twiml.py
	$(BIN)/python bench/check.py
	$(BIN)/python bench/dispatch.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache test-output
