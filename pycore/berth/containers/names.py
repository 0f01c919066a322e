"""Container names: Docker's rules for user-given names, and generated
``adjective_surname`` names (surnames of scientists and engineers) for
containers created without one."""

from __future__ import annotations

import re
import secrets

from berth.errors import InvalidArgument

VALID_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

ADJECTIVES = (
    "agile", "amazing", "bold", "brave", "bright", "calm", "careful", "charming", "cheerful",
    "clever", "cool", "curious", "daring", "dazzling", "determined", "eager", "earnest",
    "elastic", "elegant", "epic", "fearless", "fervent", "festive", "focused", "friendly",
    "frosty", "gallant", "gentle", "gifted", "glowing", "gracious", "happy", "hardy", "honest",
    "hopeful", "humble", "inspiring", "jolly", "jovial", "keen", "kind", "lively", "loyal",
    "lucid", "magical", "merry", "mighty", "modest", "nifty", "noble", "optimistic", "patient",
    "peaceful", "plucky", "polite", "precise", "quick", "quiet", "radiant", "relaxed",
    "resolute", "serene", "sharp", "sleepy", "smart", "snappy", "sober", "steady", "stoic",
    "sturdy", "swift", "tender", "thirsty", "tidy", "trusting", "upbeat", "vibrant",
    "vigilant", "vivid", "warm", "wise", "witty", "youthful", "zealous", "zen",
)

SURNAMES = (
    "agnesi", "archimedes", "babbage", "banach", "bardeen", "bell", "bohr", "boole",
    "borg", "bose", "cantor", "carson", "cauchy", "cerf", "chandrasekhar", "curie",
    "darwin", "descartes", "dijkstra", "einstein", "euclid", "euler", "faraday", "fermat",
    "fermi", "feynman", "franklin", "galileo", "gauss", "germain", "goodall", "hamilton",
    "hawking", "heisenberg", "hilbert", "hopper", "hypatia", "johnson", "joliot", "kepler",
    "knuth", "kowalevski", "lamarr", "laplace", "leakey", "leibniz", "lovelace", "lumiere",
    "maxwell", "mccarthy", "meitner", "mendel", "mirzakhani", "morse", "newton", "nobel",
    "noether", "pascal", "pasteur", "planck", "poincare", "ramanujan", "ritchie", "sagan",
    "shannon", "somerville", "stallman", "tesla", "thompson", "torvalds", "turing", "volta",
    "wiles", "wozniak", "wright", "yalow", "yonath",
)


def generate(taken) -> str:
    """A free ``adjective_surname``; a digit is appended after a few collisions."""
    for attempt in range(64):
        name = f"{secrets.choice(ADJECTIVES)}_{secrets.choice(SURNAMES)}"
        if attempt >= 8:
            name += str(secrets.randbelow(10))
        if not taken(name):
            return name
    raise InvalidArgument("could not generate a free container name; give one with --name")


def normalize(name: str) -> str:
    """A user-given name, checked, without its leading ``/``."""
    if not VALID_NAME.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")
