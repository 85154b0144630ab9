# The two commands of the README. Each sets up what it needs first (a .venv installed from requirements.lock).
.PHONY: run test setup clean

VENV := .venv
INSTALLED := $(VENV)/.installed

run: $(INSTALLED)
	$(VENV)/bin/mlcore run

test: $(INSTALLED)
	$(VENV)/bin/pytest

setup: $(INSTALLED)

# Re-install whenever the lock, the project metadata or the set-up script changes.
$(INSTALLED): requirements.lock pyproject.toml scripts/setup_environment.sh
	bash scripts/setup_environment.sh
	touch $@

clean:
	rm -rf $(VENV) data/demo
