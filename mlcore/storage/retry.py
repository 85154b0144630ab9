"""How hard a store operation tries before giving up: capped exponential backoff with jitter, bounded by tries or
by a time window.

Retries, two layers: botocore's own (a few quick tries of each HTTP request, for blips) inside each try of a whole
operation, and :class:`RetryPolicy` around it: capped exponential backoff with jitter, bounded by a number of tries
or by a time window (``RetryPolicy.for_outages(minutes)``: the longest outage an operation rides out). A retried
upload first asks (HEAD) whether the previous try's object landed intact, so an answer lost on the way back does not
send the file again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from mlcore.storage.s3_errors import duration


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up. Only transient failures are retried (see ``s3_errors``).

    Waits grow exponentially from `base_delay_s` up to `max_delay_s`, each drawn between half and all of that
    (jitter, so many clients do not come back in step). An operation gives up after `attempts` tries or, with
    `window_s`, once it has kept failing that long, whichever comes first: `window_s` is the longest outage it
    rides out. The default (3 tries, a few seconds) suits reads a person waits for; a run's store uses
    :meth:`for_outages`.
    """

    attempts: int | None = 3
    """Tries of a whole operation (an upload with all its parts, a download, a listing); None: as many as
    `window_s` allows."""
    base_delay_s: float = 1.0
    """Wait before the second try; doubles each time, with jitter."""
    max_delay_s: float = 30.0
    """Longest wait between two tries."""
    window_s: float | None = None
    """Give up once an operation has been failing this long, counted from the start of its first failing try;
    None: `attempts` alone decides."""
    botocore_attempts: int = 5
    """Tries of each single HTTP request inside one whole try (botocore's "standard" retry mode)."""

    def __post_init__(self) -> None:
        if self.attempts is None and self.window_s is None:
            raise ValueError("RetryPolicy needs attempts or window_s: otherwise it would retry forever")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")

    @classmethod
    def for_outages(cls, minutes: float, **changes: Any) -> RetryPolicy:
        """Any number of tries while an operation has been failing for less than MINUTES, 1 s to 30 s apart."""
        return cls(**{"attempts": None, "window_s": max(0.0, minutes) * 60.0, **changes})

    def delay(self, attempt: int) -> float:
        """The wait after failed try number ATTEMPT (1-based): capped exponential backoff with jitter."""
        capped = min(self.max_delay_s, self.base_delay_s * 2 ** min(attempt - 1, 32))
        return capped * random.uniform(0.5, 1.0)

    def wait_before_next(self, attempt: int, failing_for: float) -> float | None:
        """Seconds to wait before another try after try ATTEMPT failed, the operation having failed for
        FAILING_FOR seconds; None: give up. The last wait ends when the window does, so its end gets one more try."""
        if self.attempts is not None and attempt >= self.attempts:
            return None
        wait = self.delay(attempt)
        if self.window_s is not None:
            left = self.window_s - failing_for
            if left <= 0:
                return None
            wait = min(wait, left)
        return wait

    def describe(self) -> str:
        """``"up to 3 tries"`` / ``"tries for 10 min"``: for log lines."""
        if self.window_s is None:
            return f"up to {self.attempts} tries"
        return f"tries for {duration(self.window_s)}" + (f", at most {self.attempts}" if self.attempts else "")
