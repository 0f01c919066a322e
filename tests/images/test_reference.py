"""Docker reference parsing: normalisation, familiar form, Docker's errors."""

import pytest

from berth.errors import InvalidArgument
from berth.images.reference import familiar_match, parse_any, parse_normalized

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, full, familiar", [
    ("busybox", "docker.io/library/busybox", "busybox"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox", "busybox"),
    ("docker.io/busybox", "docker.io/library/busybox", "busybox"),
    ("index.docker.io/library/busybox:x", "docker.io/library/busybox:x", "busybox:x"),
    ("user/app", "docker.io/user/app", "user/app"),
    ("docker.io/library/a/b", "docker.io/library/a/b", "library/a/b"),
    ("localhost/app", "localhost/app", "localhost/app"),
    ("localhost:5000/x", "localhost:5000/x", "localhost:5000/x"),
    ("localhost:5000/x:v1", "localhost:5000/x:v1", "localhost:5000/x:v1"),
    ("registry.example.com/team/app:2", "registry.example.com/team/app:2",
     "registry.example.com/team/app:2"),
    ("127.0.0.1:5000/a_b.c-d/e__f", "127.0.0.1:5000/a_b.c-d/e__f", "127.0.0.1:5000/a_b.c-d/e__f"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
    (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
    ("[::1]:5000/x", "[::1]:5000/x", "[::1]:5000/x"),
])
def test_normalises_and_gives_familiar_form(text, full, familiar):
    ref = parse_normalized(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


def test_default_tag_is_only_added_on_request():
    ref = parse_normalized("busybox")
    assert ref.tag is None and ref.is_name_only
    assert str(ref.tag_name_only()) == "docker.io/library/busybox:latest"
    assert ref.tag_name_only().familiar() == "busybox:latest"
    digested = parse_normalized(f"busybox@{DIGEST}")
    assert digested.tag_name_only() == digested


@pytest.mark.parametrize("text, message", [
    ("", "invalid reference format"),
    ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("docker.io/Me/app", "invalid reference format: repository name (Me/app) must be lowercase"),
    ("busybox:", "invalid reference format"),
    ("busy box", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("-a", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("busybox@sha256:" + "A" * 64, "invalid checksum digest format"),
    ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("a" * 64, "invalid repository name (" + "a" * 64 + "), cannot specify 64-byte hexadecimal strings"),
    ("x/" + "a" * 250, "repository name must not be more than 255 characters"),
])
def test_invalid_references_get_dockers_messages(text, message):
    with pytest.raises(InvalidArgument) as err:
        parse_normalized(text)
    assert err.value.message == message


def test_uppercase_registry_host_is_allowed():
    assert str(parse_normalized("Registry.Example.com/app")) == "Registry.Example.com/app"


def test_parse_any_recognises_ids():
    full = "ab" * 32
    assert parse_any(full) == "sha256:" + full
    assert parse_any("sha256:" + full) == "sha256:" + full
    # A short hex string is a repository name; an ID prefix lookup comes later.
    assert str(parse_any("abc123")) == "docker.io/library/abc123"


@pytest.mark.parametrize("pattern, ref, expected", [
    ("busybox", "busybox:latest", True),
    ("busybox:latest", "busybox:latest", True),
    ("busybox:1*", "busybox:1.36", True),
    ("busy*", "busybox:latest", True),
    ("*", "user/app:1", False),          # * never crosses a /
    ("*/*", "user/app:1", True),
    ("user/*", "user/app:1", True),
    ("localhost:5000/*", "localhost:5000/x:1", True),
    ("bu?ybox", "busybox:x", True),
    ("[ab]usybox", "busybox:x", True),
    ("[^b]usybox", "busybox:x", False),
    ("other", "busybox:latest", False),
])
def test_reference_filter_matches_like_docker(pattern, ref, expected):
    assert familiar_match(pattern, parse_normalized(ref)) is expected
