"""The command tree, one module per command group.

Top-level names map to the module that defines them, so a run imports only the
module of the command it runs (start-up cost stays flat as commands are added).
Adding a command: define it in its group's module and add its name here.
"""

from __future__ import annotations

TOP_LEVEL: dict[str, tuple[str, str]] = {
    # management commands
    "image": ("images", "IMAGE"),
    "registry": ("registry", "REGISTRY"),
    "system": ("system", "SYSTEM"),
    # shortcuts and single commands
    "events": ("system", "EVENTS"),
    "history": ("images", "HISTORY"),
    "images": ("images", "IMAGES"),
    "import": ("images", "IMPORT"),
    "info": ("system", "INFO"),
    "inspect": ("inspect", "INSPECT"),
    "load": ("images", "LOAD"),
    "login": ("registry", "LOGIN"),
    "logout": ("registry", "LOGOUT"),
    "pull": ("registry", "PULL"),
    "push": ("registry", "PUSH"),
    "rmi": ("images", "RMI"),
    "save": ("images", "SAVE"),
    "tag": ("images", "TAG"),
    "version": ("system", "VERSION"),
}


def lookup(name: str):
    entry = TOP_LEVEL.get(name)
    if entry is None:
        return None
    module = __import__(f"{__name__}.{entry[0]}", fromlist=[entry[1]])
    return getattr(module, entry[1])


def listing() -> list:
    return [lookup(name) for name in TOP_LEVEL]
