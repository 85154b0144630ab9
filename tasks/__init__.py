"""Prefect tasks: thin wrappers that call mlcore and publish what a person watching the run wants to see."""

import logging

# Prefect forwards the `mlcore` logger to the run's logs (PREFECT_LOGGING_EXTRA_LOGGERS) but leaves its level
# unset, which inherits the root's WARNING; the progress lines mlcore logs are INFO.
if logging.getLogger("mlcore").level == logging.NOTSET:
    logging.getLogger("mlcore").setLevel(logging.INFO)
