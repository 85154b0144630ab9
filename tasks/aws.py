"""S3 access for the tasks: the worker's environment and AWS chain, or a prefect-aws ``AwsCredentials`` block by name.

Only the block's *name* travels as a parameter (flow and task parameters are recorded by the server); the block is
loaded where the client is built, and its secret goes from the block into the boto3 client and nowhere else.

    store = open_store("s3://team/runs", **s3_client_options("team-s3"))   # or s3_client_options(None): environment
"""

from __future__ import annotations

from typing import Any

from mlcore.errors import ConfigError
from mlcore.storage import StorageError

BLOCK_FIX = ("save one under that name (docs/DEPLOYING.md, 'Storage set-up': `AwsCredentials(...).save(NAME)`), or "
             "leave aws_credentials empty to use the worker's environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, a role)")


class S3Unreachable(ConnectionError):
    """S3 kept failing with transient errors after the store's own retries: worth another try of the whole task."""


def load_aws_credentials(name: str) -> Any:
    """The ``AwsCredentials`` block saved as NAME; ConfigError when there is none (or prefect-aws is missing)."""
    try:
        from prefect_aws import AwsCredentials
    except ImportError:
        raise ConfigError("aws_credentials names a block, but prefect-aws is not installed", where="aws_credentials",
                          fix="install the aws extra (`pip install 'mlcore[aws]'`) on the worker") from None
    try:
        return AwsCredentials.load(name)
    except ValueError:  # Prefect's answer for an unknown block name
        raise ConfigError(f"no AWS credentials block named {name!r} on the Prefect server", where="aws_credentials",
                          fix=BLOCK_FIX) from None


def s3_client_options(aws_credentials: str | None) -> dict[str, Any]:
    """Keyword arguments for ``open_store`` / ``S3Store`` / ``mirror_coco_dataset``: none (the environment), or a
    ``client`` built from the named block: its session (keys, profile, region) and its client parameters (endpoint,
    TLS verification, botocore config), with mlcore's retry settings underneath."""
    if not aws_credentials:
        return {}
    block = load_aws_credentials(aws_credentials)
    from mlcore.storage.s3_client import make_s3_client  # boto3 loads only when S3 is used

    client_options = block.aws_client_parameters.get_params_override()
    return {"client": make_s3_client(session=block.get_boto3_session(), client_options=client_options)}


def gave_up_on_transient_failures(error: StorageError) -> bool:
    """S3Store raises its give-up error `from None` inside the except block of the last failure, which Python keeps
    as the error's context: transient there means the endpoint was unwell, not the request wrong."""
    cause = error.__context__
    if cause is None:
        return False
    from mlcore.storage.s3_errors import is_s3_failure, is_transient

    return is_s3_failure(cause) and is_transient(cause)


__all__ = ["S3Unreachable", "gave_up_on_transient_failures", "load_aws_credentials", "s3_client_options"]
