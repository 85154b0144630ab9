"""Where a stored run is, said so that a person on another machine can get it: the stored-run artifacts' markdown.

A local store is a folder on the worker's machine, so a `file://` link opens nothing elsewhere: the artifact names
the machine and the path, and the command that copies the run from there. An S3 store: the `s3://` URI and the
commands that download it or make a browser link. No presigned link is published: it would carry the access key id,
which logs, artifacts and manifests never do (docs/DEPLOYING.md), and it would expire while the artifact stays.
"""

from __future__ import annotations

import shlex
import socket

from mlcore.storage.location import is_s3_url

PRESIGN_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL lives


def stored_run_markdown(url: str, *, host: str | None = None) -> str:
    """The stored-run artifact: the run's folder in the store (URL) and how to get it from another machine."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if is_s3_url(url):
        report = f"{url}/report.html"
        lines = [f"**`{url}`**", "",
                 f"- download: `aws s3 cp --recursive {shlex.quote(url)} {shlex.quote(name)}`",
                 f"- a link to the report for a browser (valid {PRESIGN_SECONDS // 86400} days): "
                 f"`aws s3 presign {shlex.quote(report)} --expires-in {PRESIGN_SECONDS}`",
                 "- S3-compatible service: add `--endpoint-url` with the store's endpoint (AWS_ENDPOINT_URL)"]
    else:
        host = host or socket.gethostname()
        lines = [f"**`{url}`** on `{host}` (a folder on the machine that ran the flow)", "",
                 f"- copy it: `rsync -a {shlex.quote(f'{host}:{url}')} .`",
                 f"- report: `{url}/report.html`"]
    return "\n".join(lines)


def stored_file_markdown(url: str, *, host: str | None = None) -> str:
    """An artifact for one stored file (the manifest): where it is and the command that prints it elsewhere."""
    if is_s3_url(url):
        return f"**`{url}`**\n\n- print it: `aws s3 cp {shlex.quote(url)} -`"
    host = host or socket.gethostname()
    return f"**`{url}`** on `{host}`\n\n- print it: `ssh {shlex.quote(host)} cat {shlex.quote(url)}`"


__all__ = ["PRESIGN_SECONDS", "stored_file_markdown", "stored_run_markdown"]
