"""Which events a ``GET /events?filters=...`` subscriber receives.

The semantics follow Docker's: values of one key are OR-ed, keys are AND-ed;
names and IDs match by prefix where Docker fuzzy-matches (containers, volumes,
networks), and images match by ID, by reference, or by the reference without
its tag.
"""

from __future__ import annotations

from typing import Any, Mapping

ACCEPTED_KEYS = frozenset({
    "config", "container", "daemon", "event", "image", "label", "network",
    "node", "plugin", "scope", "secret", "service", "type", "volume",
})

# Event filters Docker matches by prefix because the action carries a suffix
# ("exec_start: sh -c ...", "health_status: healthy").
_PREFIX_ACTIONS = ("exec_create", "exec_start", "health_status")


# Filter keys that select events of their own type by actor ID or name.
_ACTOR_TYPES = ("container", "network", "volume", "plugin", "daemon",
                "node", "service", "secret", "config")


def _strip_tag(reference: str) -> str:
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


class EventFilter:
    def __init__(self, filters: Mapping[str, list[str]] | None = None):
        self._filters = {k: list(v) for k, v in (filters or {}).items() if v}

    @property
    def unknown_keys(self) -> list[str]:
        return sorted(set(self._filters) - ACCEPTED_KEYS)

    def _exact(self, key: str, *candidates: str | None) -> bool:
        values = self._filters.get(key)
        if not values:
            return True
        return any(c is not None and c in values for c in candidates)

    def _fuzzy(self, key: str, *candidates: str | None) -> bool:
        values = self._filters.get(key)
        if not values:
            return True
        return any(c and any(c == v or c.startswith(v) for v in values) for c in candidates)

    def _labels(self, attributes: Mapping[str, str]) -> bool:
        for spec in self._filters.get("label", ()):
            key, sep, value = spec.partition("=")
            if key not in attributes or (sep and attributes[key] != value):
                return False
        return True

    def _event(self, action: str) -> bool:
        values = self._filters.get("event")
        if not values:
            return True
        if any(v in _PREFIX_ACTIONS for v in values):
            return any(action == v or action.startswith(v) for v in values)
        return action in values

    def _actor_of(self, type_: str, event: Mapping[str, Any]) -> bool:
        """container/volume/network/... filters apply only to events of that
        type, by ID or name; other types pass when the key is set."""
        if type_ not in self._filters:
            return True
        if event.get("Type") != type_:
            return False
        actor = event.get("Actor") or {}
        return self._fuzzy(type_, actor.get("ID"), (actor.get("Attributes") or {}).get("name"))

    def _image(self, event: Mapping[str, Any]) -> bool:
        if "image" not in self._filters:
            return True
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        # An image event names its image in "name"; a container event in "image".
        name = attributes.get("name" if event.get("Type") == "image" else "image")
        actor_id = actor.get("ID")
        candidates = [actor_id, name]
        candidates += [_strip_tag(c) for c in (actor_id, name) if c]
        return self._exact("image", *candidates)

    def match(self, event: Mapping[str, Any]) -> bool:
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        return (self._event(str(event.get("Action", "")))
                and self._exact("type", event.get("Type"))
                and self._exact("scope", event.get("scope"))
                and all(self._actor_of(t, event) for t in _ACTOR_TYPES)
                and self._image(event)
                and self._labels(attributes))
