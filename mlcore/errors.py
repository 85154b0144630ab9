"""One exception family per kind of user error.

Each carries what a person needs to act: where the problem is (file, JSON path, image, config key) and how to fix
it. The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MlcoreError(Exception):
    """A problem with the user's input or environment, explained for a person."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.message = message
        self.where = where
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class DatasetError(MlcoreError):
    """The dataset (annotation file or images) cannot be used as it is."""


class ConfigError(MlcoreError):
    """A configuration file is missing, malformed or has invalid values."""


class ModelError(MlcoreError):
    """Model weights or adapters are missing or do not match."""


class TrainingError(MlcoreError):
    """Training cannot continue (e.g. the loss keeps coming out NaN or infinite)."""
