"""Server-Sent Events for one job: ``progress`` for each new epoch, ``status`` for each change.

Every event's id is ``<epoch>:<transition id>``, the last epoch and the last status
change the client has been sent. Both parts only grow, so a client that reconnects
with ``Last-Event-ID`` receives exactly the epochs and changes after them. The stream
polls the database with short read transactions. It ends after the job's final
status event, or when the job is deleted.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from services import jobs
from services.errors import InvalidInput, NotFound
from services.schemas import TERMINAL_STATUSES
from services.settings import Settings

__all__ = ["POLL_SECONDS", "open_job_events"]

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5

_EVENT_ID = re.compile(r"(\d{1,9}):(\d{1,18})")


@dataclass
class _Position:
    epoch: int = 0
    transition: int = 0

    @property
    def event_id(self) -> str:
        return f"{self.epoch}:{self.transition}"


def parse_last_event_id(last_event_id: str | None) -> _Position:
    """Parse a ``Last-Event-ID`` header; None or empty starts from the beginning.

    Raises:
        InvalidInput: the header is not an id this stream sent.
    """
    if not last_event_id:
        return _Position()
    match = _EVENT_ID.fullmatch(last_event_id.strip())
    if match is None:
        raise InvalidInput(
            f"Last-Event-ID must be an event id of this stream, '<epoch>:<transition id>' "
            f"such as '12:3', got {last_event_id!r}",
            loc=("header", "last-event-id"),
        )
    return _Position(int(match.group(1)), int(match.group(2)))


async def open_job_events(
    settings: Settings, tenant: str, job_id: str, last_event_id: str | None
) -> AsyncIterator[ServerSentEvent]:
    """Check the job and the position, then return the stream of its events.

    Raises:
        NotFound: no job of ``tenant`` has that id; raised here, before the stream starts.
        InvalidInput: ``last_event_id`` is malformed.
    """
    position = parse_last_event_id(last_event_id)
    first = await run_in_threadpool(
        jobs.read_events,
        settings,
        tenant,
        job_id,
        after_epoch=position.epoch,
        after_transition=position.transition,
    )
    assert first is not None  # without known_version a batch is always read
    return _stream(settings, tenant, job_id, position, first)


async def _stream(
    settings: Settings,
    tenant: str,
    job_id: str,
    position: _Position,
    batch: jobs.EventBatch | None,
) -> AsyncIterator[ServerSentEvent]:
    known_version = None
    while True:
        if batch is not None:
            known_version = batch.version
            events, finished = _events(batch, position)
            for event in events:
                yield event
            if finished or batch.finished:
                return
        await anyio.sleep(POLL_SECONDS)
        try:
            batch = await run_in_threadpool(
                jobs.read_events,
                settings,
                tenant,
                job_id,
                after_epoch=position.epoch,
                after_transition=position.transition,
                known_version=known_version,
            )
        except NotFound:
            logger.info("job %s was deleted while a client streamed its events", job_id)
            return


def _events(batch: jobs.EventBatch, position: _Position) -> tuple[list[ServerSentEvent], bool]:
    """Return the batch's events in order and whether they include a final status.

    Status changes to queued or running come first, then the new epochs, then a
    final status, so a client sees ``succeeded`` only after the last epoch.
    ``position`` advances as each event is made.
    """
    events = []
    final = []
    for transition_id, transition in batch.transitions:
        if transition.status in TERMINAL_STATUSES:
            final.append((transition_id, transition))
            continue
        position.transition = transition_id
        events.append(_status_event(transition.model_dump(mode="json"), position))
    for epoch, values in batch.records:
        position.epoch = epoch
        events.append(_event("progress", values, position))
    for transition_id, transition in final:
        position.transition = transition_id
        data = {**transition.model_dump(mode="json"), "stop_reason": batch.stop_reason}
        events.append(_status_event(data, position))
    return events, bool(final)


def _status_event(data: dict[str, Any], position: _Position) -> ServerSentEvent:
    return _event("status", data, position)


def _event(name: str, data: dict[str, Any], position: _Position) -> ServerSentEvent:
    payload = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return ServerSentEvent(data=payload, event=name, id=position.event_id)
