"""Which S3 failures are worth retrying, and how the others read for a person.

Transient: the connection failed or timed out, the service answered 5xx, or it throttled us (429, SlowDown, ...).
Everything else (403 access denied, 404 no such bucket or key, a malformed request) fails the same way again, so it
is reported at once as a :class:`StorageError` with where and fix.

Messages never carry the endpoint URL or credentials: botocore's connection errors print the URL, so those are
described by their type only.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import RetriesExceededError

from mlcore.storage.base import StorageError

THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "BandwidthLimitExceeded",
    }
)
SERVER_CODES = frozenset({"InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException"})
ACCESS_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
    }
)
MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})
MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

CREDENTIALS_FIX = (
    "check the credentials the AWS chain finds (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, "
    "AWS_PROFILE, an instance role, or the Prefect AWS credentials block) and that they allow s3:ListBucket, "
    "s3:GetObject and s3:PutObject on this bucket"
)
ENDPOINT_FIX = (
    "check the network and that AWS_ENDPOINT_URL (or the region's default endpoint, AWS_REGION) names a running "
    "S3 service, then retry"
)


class VerificationMismatch(Exception):
    """A transfer finished but the stored or fetched bytes do not match: worth one more try."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_transient(exc: BaseException) -> bool:
    """Connection failures, timeouts, 5xx and throttling; never 403/404 or a missing bucket."""
    if isinstance(exc, (VerificationMismatch, RetriesExceededError, IncompleteReadError)):
        return True
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        code, status = error_code(exc), http_status(exc)
        if code in ACCESS_CODES | MISSING_BUCKET_CODES | MISSING_KEY_CODES:
            return False
        return status >= 500 or status == 429 or code in THROTTLING_CODES | SERVER_CODES
    return False


def describe(exc: BaseException) -> str:
    """A short, endpoint-free description: ``"SlowDown (HTTP 503)"``, ``"HTTP 503"``, ``"ConnectionClosedError"``."""
    if isinstance(exc, ClientError):
        code, status = error_code(exc), http_status(exc)
        if not code or code == str(status):  # a HEAD answer has no body to name the error
            return f"HTTP {status}"
        return f"{code} (HTTP {status})"
    if isinstance(exc, VerificationMismatch):
        return str(exc)
    if isinstance(exc, RetriesExceededError) and exc.last_exception is not None:
        return describe(exc.last_exception)
    return type(exc).__name__


def is_s3_failure(exc: BaseException) -> bool:
    """Errors this module knows how to explain (anything else is a bug and keeps its traceback)."""
    return isinstance(exc, (BotoCoreError, ClientError, RetriesExceededError, VerificationMismatch))


def permanent_error(
    exc: BaseException, *, action: str, where: str, bucket: str, bare_404_means_bucket: bool = False
) -> StorageError:
    """One clear StorageError for a failure that retrying cannot fix.

    HEAD requests carry no error body, so a missing bucket and a missing key both arrive as a bare "404":
    `bare_404_means_bucket` says which one the caller asked about.
    """
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(f"{action}: no usable AWS credentials were found", where=where, fix=CREDENTIALS_FIX)
    if isinstance(exc, ClientError):
        code, message = error_code(exc), _message(exc)
        if code in MISSING_BUCKET_CODES or (code in ("404", "NotFound") and bare_404_means_bucket):
            return StorageError(
                f"{action}: the bucket {bucket!r} does not exist",
                where=where,
                fix=f"create the bucket (e.g. `aws s3 mb s3://{bucket}`) or correct the store location; "
                "check that AWS_ENDPOINT_URL / AWS_REGION point at the service that holds it",
            )
        if code in ACCESS_CODES:
            return StorageError(f"{action}: access denied ({code})", where=where, fix=CREDENTIALS_FIX)
        if code in MISSING_KEY_CODES:
            return StorageError(
                f"{action}: no artifact stored under this key", where=where, fix="check the run id and key"
            )
        return StorageError(f"{action}: S3 refused the request: {code} {message}".rstrip(), where=where)
    if isinstance(exc, VerificationMismatch):
        return StorageError(
            f"{action}: {exc}", where=where, fix="store the file again; if it repeats, check the endpoint"
        )
    return StorageError(f"{action}: {describe(exc)}", where=where, fix=ENDPOINT_FIX)


def exhausted_error(
    exc: BaseException, *, action: str, where: str, attempts: int, seconds: float | None = None
) -> StorageError:
    """The give-up error after `attempts` tries that kept failing for `seconds` (from the first failing try)."""
    during = "" if seconds is None else f" over {duration(seconds)}"
    return StorageError(
        f"{action} failed {attempts} times{during}; last error: {describe(exc)}",
        where=where,
        fix=ENDPOINT_FIX,
    )


def duration(seconds: float) -> str:
    """``0.4`` -> ``"0.4 s"``, ``75`` -> ``"75 s"``, ``600`` -> ``"10 min"``: for people."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min".replace(".0 min", " min")


def _message(exc: ClientError) -> str:
    error: dict[str, Any] = exc.response.get("Error", {})
    return str(error.get("Message", ""))
