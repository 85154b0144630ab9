"""`annotation-sensor`: emit `mlcore.annotations.updated` when an annotation file's content changes.

Runs on an interval (prefect.yaml). Each run hashes the source (a local path or s3://bucket/key, read with the
worker's AWS environment or the AwsCredentials block named by `aws_credentials`), compares the sha256
with the one remembered in a Prefect Variable, and only when they differ emits the event, whose payload carries the
file (`data`) and its `sha256`. The `training-pipeline` deployment's trigger turns the event into a training run;
an s3:// `data` is mirrored by the pipeline's fetch stage (give that deployment the same `aws_credentials`).

The first sight of a source counts as a change: a sensor pointed at existing annotations starts one training run,
so a new deployment trains without waiting for the next edit. To adopt a file without training, set the Variable
to its sha256 first (`prefect variable set <name> <sha256>`; the name is in every sensor run's log).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from prefect import flow
from prefect.events import emit_event
from prefect.states import Failed, State
from prefect.variables import Variable

from tasks.annotations import AnnotationFingerprint, fingerprint_annotations_task

ANNOTATIONS_UPDATED = "mlcore.annotations.updated"
RESOURCE_PREFIX = "mlcore.annotations."


@dataclass(frozen=True)
class SensorResult:
    """What one sensor run saw and did."""

    source: str
    sha256: str
    previous_sha256: str | None
    variable: str
    emitted: str | None  # the event's name when one was emitted

    @property
    def changed(self) -> bool:
        return self.emitted is not None


def source_key(source: str) -> str:
    """A stable, readable id for a source: its file name (lower-case, [a-z0-9-]) and 12 hex digits of its location's
    sha256, e.g. ``instances-json-3f2a9c1b0d4e``. Used in the Variable's name and the event's resource id."""
    name = re.sub(r"[^a-z0-9]+", "-", source.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-")[:60]
    return f"{name or 'annotations'}-{hashlib.sha256(source.encode()).hexdigest()[:12]}"


def variable_name_for(source: str) -> str:
    """The Variable remembering `source`'s last sha256 (Variable names allow lower-case letters, digits, - and _)."""
    return f"mlcore-annotations-{source_key(source)}"


def _remembered_sha256(value: object) -> str | None:
    # The sensor stores {"source": ..., "sha256": ...}; a bare sha256 string (set by hand) works too.
    if isinstance(value, dict):
        return value.get("sha256")
    return value if isinstance(value, str) and value else None


@flow(name="annotation-sensor", log_prints=True)
def annotation_sensor(source: str, event: str = ANNOTATIONS_UPDATED, variable: str | None = None,
                      aws_credentials: str | None = None) -> SensorResult | State:
    """Emit EVENT when SOURCE's content differs from the last run's (the first run always emits).

    Args:
        source: the annotation file: a local path (resolved to an absolute one) or s3://bucket/key.
        event: the event to emit; the training-pipeline deployment's trigger listens for mlcore.annotations.updated.
        variable: the Prefect Variable that remembers the last sha256; empty: derived from the source.
        aws_credentials: name of a prefect-aws AwsCredentials block to read an s3:// source with; empty: the
            worker's environment / AWS chain (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID..., AWS_PROFILE).
    """
    state = fingerprint_annotations_task(source, aws_credentials, return_state=True)
    if state.is_failed():  # a new state: returning the task's own would read "1/1 states failed"
        return Failed(message=state.message)
    seen: AnnotationFingerprint = state.result()
    name = variable or variable_name_for(seen.source)
    previous = _remembered_sha256(Variable.get(name, default=None))
    if previous == seen.sha256:
        print(f"{seen.source}: unchanged (sha256 {seen.sha256[:12]}, Variable {name})")
        return SensorResult(seen.source, seen.sha256, previous, name, emitted=None)

    # Emit first, then remember: if remembering fails the next run emits again (a duplicate training run, which the
    # pipeline's caching makes cheap) rather than never.
    emit_event(event, resource={"prefect.resource.id": RESOURCE_PREFIX + source_key(seen.source),
                                "prefect.resource.name": seen.source},
               payload={"data": seen.source, "sha256": seen.sha256, "previous_sha256": previous, "size": seen.size})
    Variable.set(name, {"source": seen.source, "sha256": seen.sha256}, overwrite=True)
    was = f"sha256 {previous[:12]}" if previous else "first sight"
    print(f"{seen.source}: changed ({was} -> {seen.sha256[:12]}); emitted {event}, Variable {name} updated")
    return SensorResult(seen.source, seen.sha256, previous, name, emitted=event)
