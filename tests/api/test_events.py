"""GET /events: live streaming, replay windows and filters, over raw HTTP."""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest


def filters(**values) -> str:
    return urllib.parse.quote(json.dumps(values))


@pytest.fixture
def busybox(api, busybox_rootfs) -> str:
    reply = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest",
                     body=busybox_rootfs.read_bytes())
    assert reply.status == 200, reply.body
    return reply.json_lines()[-1]["status"]


def test_live_stream_receives_filtered_events(api, busybox):
    conn, resp = api.open_stream(f"/v1.41/events?filters={filters(type=['image'], event=['tag'])}")
    try:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert api.post(f"/images/{busybox}/tag?repo=live&tag=1").status == 201
        assert api.delete("/images/live:1").status == 200  # an untag: filtered out
        assert api.post(f"/images/{busybox}/tag?repo=live&tag=2").status == 201
        first = json.loads(resp.readline())
        second = json.loads(resp.readline())
    finally:
        conn.close()
    for event, name in ((first, "live:1"), (second, "live:2")):
        assert event["Type"] == "image"
        assert event["Action"] == "tag"
        assert event["Actor"]["ID"] == busybox
        assert event["Actor"]["Attributes"]["name"] == name
        assert isinstance(event["timeNano"], int) and event["time"] == event["timeNano"] // 10**9
    assert first["timeNano"] < second["timeNano"]


def test_replay_window_closes_at_until(api, busybox):
    before = time.time()
    assert api.post(f"/images/{busybox}/tag?repo=window&tag=1").status == 201
    assert api.delete("/images/window:1").status == 200
    until = f"{time.time():.9f}"
    reply = api.get(f"/events?since={before:.9f}&until={until}")
    assert reply.status == 200
    actions = [(e["Action"], e["Actor"]["Attributes"].get("name")) for e in reply.json_lines()]
    assert ("tag", "window:1") in actions
    # Like Docker, an untag event names the image by ID, not by the removed tag.
    assert ("untag", busybox) in actions
    # The import happened before `since`: not replayed.
    assert ("import", "busybox:latest") not in actions

    by_image = api.get(f"/events?since=0&until={until}&filters={filters(image=['window'])}")
    assert {e["Actor"]["Attributes"]["name"] for e in by_image.json_lines()} == {"window:1"}


def test_bad_event_queries(api):
    reply = api.get(f"/events?filters={filters(colour=['red'])}")
    assert reply.status == 400 and reply.json()["message"] == "invalid filter 'colour'"
    reply = api.get("/events?since=yesterday")
    assert reply.status == 400 and "'since': 'yesterday'" in reply.json()["message"]
    reply = api.get("/events?since=20&until=10")
    assert reply.status == 400
    assert reply.json()["message"] == "since time (20) cannot be after until time (10)"
