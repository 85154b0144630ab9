"""A boto3 S3 client with mlcore's retry, timeout and connection-pool settings."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

from mlcore.storage.retry import RetryPolicy

MAX_POOL_CONNECTIONS = 32  # threads sharing one client (uploads in parts, dataset mirrors) each hold a connection


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    retry: RetryPolicy | None = None,
    session: Any = None,
    client_options: dict[str, Any] | None = None,
) -> Any:
    """A boto3 S3 client with mlcore's retry and timeout settings; unset arguments fall back to the environment and
    the AWS credential chain.

    `session` is a ready ``boto3.Session`` (e.g. ``AwsCredentials.get_boto3_session()`` of a Prefect block: its
    keys, profile and region); `client_options` are extra ``session.client`` arguments (``endpoint_url``,
    ``verify``, ``use_ssl``, a botocore ``config``, ...). A given ``config`` is merged over mlcore's, so its own
    settings win.
    """
    retry = retry or RetryPolicy()
    options = dict(client_options or {})
    config = Config(
        retries={"mode": "standard", "total_max_attempts": retry.botocore_attempts},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=MAX_POOL_CONNECTIONS,
    )
    given_config = options.pop("config", None)
    if given_config is not None:
        config = config.merge(given_config)
    # None: botocore reads AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself
    options["endpoint_url"] = endpoint_url or options.get("endpoint_url") or None
    if session is None:
        session = boto3.session.Session()
        # botocore reads AWS_DEFAULT_REGION but not AWS_REGION, which most tools set
        region = region or os.environ.get("AWS_REGION")
    # a given session's own region (a block's region_name) comes before the environment's
    options["region_name"] = region or session.region_name or os.environ.get("AWS_REGION") or None
    return session.client("s3", config=config, **options)
