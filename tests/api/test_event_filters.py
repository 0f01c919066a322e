"""Which events a /events filter lets through (Docker's matching rules)."""

from __future__ import annotations

import pytest

from berth.api.params import parse_filters, parse_timestamp
from berth.errors import InvalidArgument
from berth.events import EventBus, EventFilter


def image_event(action="tag", id_="sha256:" + "ab" * 32, name="busybox:latest", **attrs):
    return {"Type": "image", "Action": action, "scope": "local",
            "Actor": {"ID": id_, "Attributes": {"name": name, **attrs}}}


def container_event(action="start", id_="c0ffee" * 10 + "abcd", name="web", image="busybox:1.36",
                    **attrs):
    return {"Type": "container", "Action": action, "scope": "local",
            "Actor": {"ID": id_, "Attributes": {"name": name, "image": image, **attrs}}}


def test_no_filter_matches_everything():
    assert EventFilter({}).match(image_event())
    assert EventFilter(None).match(container_event())


def test_type_and_event_are_exact_and_or_within_a_key():
    f = EventFilter({"type": ["image"], "event": ["tag", "untag"]})
    assert f.match(image_event("tag"))
    assert f.match(image_event("untag"))
    assert not f.match(image_event("delete"))
    assert not f.match(container_event("tag"))


def test_event_prefix_for_actions_with_suffixes():
    f = EventFilter({"event": ["exec_start"]})
    assert f.match(container_event("exec_start: sh -c true"))
    assert not f.match(container_event("exec_create: sh"))


def test_image_matches_id_reference_and_name_without_tag():
    event = image_event(name="localhost:5000/team/app:v1")
    assert EventFilter({"image": ["localhost:5000/team/app:v1"]}).match(event)
    assert EventFilter({"image": ["localhost:5000/team/app"]}).match(event)
    assert EventFilter({"image": ["sha256:" + "ab" * 32]}).match(event)
    assert not EventFilter({"image": ["localhost:5000/team/other"]}).match(event)
    # A container event names its image in the "image" attribute.
    assert EventFilter({"image": ["busybox"]}).match(container_event())
    assert not EventFilter({"image": ["alpine"]}).match(container_event())


def test_container_matches_id_prefix_or_name_and_only_containers():
    event = container_event()
    assert EventFilter({"container": ["c0ffee"]}).match(event)
    assert EventFilter({"container": ["web"]}).match(event)
    assert not EventFilter({"container": ["db"]}).match(event)
    assert not EventFilter({"container": ["web"]}).match(image_event())


def test_labels_key_or_key_value_all_required():
    event = container_event(**{"com.example.team": "infra", "tier": "db"})
    assert EventFilter({"label": ["tier"]}).match(event)
    assert EventFilter({"label": ["tier=db", "com.example.team=infra"]}).match(event)
    assert not EventFilter({"label": ["tier=web"]}).match(event)
    assert not EventFilter({"label": ["tier", "missing"]}).match(event)


def test_unknown_keys_are_reported():
    assert EventFilter({"colour": ["red"], "type": ["image"]}).unknown_keys == ["colour"]


def test_parse_filters_accepts_both_encodings():
    assert parse_filters('{"type": ["image"]}') == {"type": ["image"]}
    assert parse_filters('{"type": {"image": true, "container": false}}') == {"type": ["image"]}
    assert parse_filters("") == {}
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_filters("{type: image}")
    with pytest.raises(InvalidArgument, match="filter 'type' must be"):
        parse_filters('{"type": {"image": "yes"}}')


def test_parse_timestamp():
    assert parse_timestamp({"since": "12"}, "since") == 12_000_000_000
    assert parse_timestamp({"since": "12.5"}, "since") == 12_500_000_000
    assert parse_timestamp({"since": "12.000000001"}, "since") == 12_000_000_001
    assert parse_timestamp({}, "since") is None
    with pytest.raises(InvalidArgument, match="'since': '1h'"):
        parse_timestamp({"since": "1h"}, "since")


def test_bus_history_window():
    bus = EventBus()
    first = bus.publish("image", "tag", "sha256:1", {"name": "a:1"})
    second = bus.publish("image", "untag", "sha256:1", {"name": "a:1"})
    assert bus.history(first["timeNano"], first["timeNano"]) == [first]
    assert bus.history(second["timeNano"]) == [second]
    assert bus.history(0) == [first, second]
