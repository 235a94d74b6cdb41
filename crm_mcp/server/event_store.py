"""A bounded in-memory event store: streamable HTTP clients that reconnect get what they missed.

With an event store the SDK opens every SSE stream with a priming event (an id and the `retry`
interval), numbers each event, and on a reconnect with `Last-Event-ID` replays the events of that
stream after it. One process keeps the newest `max_events`; a client that was away longer than
that starts over (it refetches, as it would after a restart). Across replicas, a shared store
(Redis) would be the next step.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from itertools import count

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.types import JSONRPCMessage

DEFAULT_MAX_EVENTS = 10_000
DEFAULT_RETRY_MS = 1_000  # what the priming event tells clients to wait before reconnecting


@dataclass(frozen=True)
class _Stored:
    stream_id: StreamId
    message: JSONRPCMessage | None  # None: a priming event, stored for ordering, never replayed


class InMemoryEventStore(EventStore):
    """Events by id in arrival order; the oldest are dropped past `max_events`."""

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self._max = max_events
        self._events: OrderedDict[EventId, _Stored] = OrderedDict()
        self._ids = count(1)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = f"{next(self._ids)}"
        self._events[event_id] = _Stored(stream_id, message)
        while len(self._events) > self._max:
            self._events.popitem(last=False)
        return event_id

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        """Send the events of `last_event_id`'s stream stored after it; None if it is unknown."""
        stored = self._events.get(last_event_id)
        if stored is None:
            return None
        after = False
        for event_id, event in list(self._events.items()):
            if after and event.stream_id == stored.stream_id and event.message is not None:
                await send_callback(EventMessage(event.message, event_id))
            after = after or event_id == last_event_id
        return stored.stream_id
