"""Client-side image reference parsing (docker's distribution/reference rules)."""

import pytest

from berth_cli.reference import InvalidReference, parse_normalized, split_for_display


@pytest.mark.parametrize("text, name, familiar, tag, digest", [
    ("busybox", "docker.io/library/busybox", "busybox", None, None),
    ("busybox:1.36", "docker.io/library/busybox", "busybox", "1.36", None),
    ("user/app:v1", "docker.io/user/app", "user/app", "v1", None),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox", "busybox", "latest", None),
    ("index.docker.io/library/busybox", "docker.io/library/busybox", "busybox", None, None),
    ("localhost:5000/app:dev", "localhost:5000/app", "localhost:5000/app", "dev", None),
    ("localhost/app", "localhost/app", "localhost/app", None, None),
    ("registry.example.com/a/b/c", "registry.example.com/a/b/c", "registry.example.com/a/b/c", None, None),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox", "busybox", None, "sha256:" + "a" * 64),
])
def test_parse_normalized(text, name, familiar, tag, digest):
    ref = parse_normalized(text)
    assert (ref.name, ref.familiar_name, ref.tag, ref.digest) == (name, familiar, tag, digest)


@pytest.mark.parametrize("text, message", [
    ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("busybox:bad tag", "invalid reference format"),
    ("a" * 64, "invalid repository name (" + "a" * 64 + "), cannot specify 64-byte hexadecimal strings"),
    ("-leading", "invalid reference format"),
    ("busybox::x", "invalid reference format"),
    ("", "invalid reference format"),
])
def test_invalid_references(text, message):
    with pytest.raises(InvalidReference) as e:
        parse_normalized(text)
    assert str(e.value) == message


def test_split_for_display_names_what_the_daemon_stored():
    ref = split_for_display("docker.io/library/busybox:latest")
    assert (ref.familiar_name, ref.tag) == ("busybox", "latest")
    ref = split_for_display("localhost:5000/app@sha256:" + "b" * 64)
    assert (ref.familiar_name, ref.tag, ref.digest) == ("localhost:5000/app", None, "sha256:" + "b" * 64)
    assert split_for_display("<none>:<none>") is None
    assert split_for_display("<none>@<none>") is None
