"""Prefect flows: each reads as a plan of task calls.

Importing this package sets defaults for running flows from this checkout, before Prefect reads its settings.
An operator's own environment wins (setdefault); deployments get the same values from prefect.yaml.
"""

import os

PREFECT_DEFAULTS = {
    # Telemetry cannot reach its host offline, and once locked a fresh SQLite database doing so.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The embedded server needs 8-20 s to start on a small machine; the default allows 20.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # mlcore's own log lines belong in the flow run's logs.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "mlcore",
}
for _key, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
