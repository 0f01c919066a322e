"""``GET /events``: replay from the bus history, then stream live events."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from berth.api.context import engine_of
from berth.api.params import check_filter_keys, parse_filters, parse_timestamp
from berth.api.streams import JSONStream
from berth.errors import InvalidArgument
from berth.events.filters import ACCEPTED_KEYS, EventFilter

# How often an idle stream checks whether its client hung up.
_IDLE_CHECK_SECONDS = 1.0


async def get_events(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    filters = parse_filters(request.query.get("filters"))
    check_filter_keys(filters, ACCEPTED_KEYS)
    event_filter = EventFilter(filters)
    since = parse_timestamp(request.query, "since")
    until = parse_timestamp(request.query, "until")
    if since is not None and until is not None and until < since:
        raise InvalidArgument(
            f"since time ({request.query['since']}) cannot be after until time "
            f"({request.query['until']})")

    bus = engine.events
    # Subscribe before reading the history so nothing published in between is lost;
    # events present in both are sent once.
    queue = bus.subscribe()
    stream = JSONStream(request)
    try:
        replayed = []
        if since is not None or until is not None:
            replayed = bus.history(since or 0, until)
        replayed_ids = {id(e) for e in replayed}

        await stream.start()
        for event in replayed:
            if event_filter.match(event):
                await stream.send(event)
        if until is not None and until <= time.time_ns():
            return await stream.finish()

        while True:
            timeout = _IDLE_CHECK_SECONDS
            if until is not None:
                timeout = min(timeout, max(0.0, (until - time.time_ns()) / 1e9))
            try:
                event = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                if stream.client_gone() or (until is not None and time.time_ns() >= until):
                    break
                continue
            if event is None:  # daemon shutdown
                break
            if until is not None and event["timeNano"] > until:
                break
            if id(event) in replayed_ids or not event_filter.match(event):
                continue
            await stream.send(event)
        return await stream.finish()
    except (ConnectionResetError, BrokenPipeError):
        return stream.response
    finally:
        bus.unsubscribe(queue)


ROUTES = [("GET", "/events", get_events)]
