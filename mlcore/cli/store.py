"""`mlcore store RUN_DIR`: store a pipeline run folder, or finish storing one whose store step failed.

The pipeline writes RUN_DIR/store-plan.json before its store step: the run's files with their sha256s, the lineage
and the report. This command uploads what is not already in the store with the same sha256 (an interrupted store
sends only the rest), writes manifest.json last, verifies it, and rewrites the run's report to say what happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from mlcore.errors import MlcoreError

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)
EXIT_FAILED = 2
DEFAULT_RETRY_MINUTES = 10.0  # tasks.store.DEFAULT_RETRY_MINUTES (that module loads Prefect)


def store(
    run_dir: Annotated[Path, typer.Argument(help="The pipeline's run folder (its --output), holding store-plan.json.")],
    store: Annotated[Optional[str], typer.Option(
        help="A folder or s3://bucket/prefix (default: where the run was to be stored, as its plan says).")] = None,
    aws_credentials: Annotated[Optional[str], typer.Option(
        "--aws-credentials", metavar="BLOCK", help="Name of a prefect-aws AwsCredentials block for an s3:// store "
        "(default: the AWS environment).")] = None,
    retry_minutes: Annotated[float, typer.Option(
        "--retry-minutes", min=0, help="How long a failing request or file is retried (connection refused or "
        "reset, 5xx, throttling) before giving up.")] = DEFAULT_RETRY_MINUTES,
) -> None:
    """Store a run folder with a verified manifest.json, or finish an interrupted store (what is there is kept)."""
    from mlcore.storage import (RetryPolicy, StorageError, open_store, read_plan, store_command, store_run_folder,
                                store_target, write_plan)
    from mlcore.storage.location import is_s3_url

    run_dir = run_dir.expanduser().resolve()
    plan = read_plan(run_dir)
    target = store_target(store) if store is not None else plan.store
    if not target:
        raise StorageError(f"--store {store!r} names no store", fix="give a folder or s3://bucket/prefix")
    options = {}
    if aws_credentials and is_s3_url(target):
        import flows  # noqa: F401 (sets Prefect's defaults before Prefect loads)
        from tasks.aws import s3_client_options

        options = s3_client_options(aws_credentials)
    plan = plan.model_copy(update={"store": target, "command": store_command(run_dir, target, aws_credentials)})
    write_plan(plan, run_dir)
    try:
        stored = store_run_folder(plan, open_store(target, retry=RetryPolicy.for_outages(retry_minutes), **options),
                                  run_dir)
    except MlcoreError as error:
        stderr.print("[bold red]not stored[/]: ", end="")
        stderr.print(f"{error}\n  the report in {run_dir} says so; run this command again to finish the store "
                     "(files already stored are not sent again)", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    stdout.print(f"stored: {stored.url} ({stored.files} files, manifest verified; {stored.sent} sent, "
                 f"{stored.skipped} already stored)", highlight=False)
