"""Parsing of -v, --mount and --tmpfs: what is accepted, what each becomes in
the runtime spec, and Docker's messages for what is not."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.volumes.mounts import (merge_tmpfs_options, parse_bind, parse_mount, parse_tmpfs,
                                  parse_volumes_from, tmpfs_data)


def test_named_volume_bind():
    mp = parse_bind("data:/srv/data")
    assert (mp.type, mp.name, mp.destination, mp.rw, mp.mode) == ("volume", "data", "/srv/data", True, "z")
    assert mp.copy_data


def test_named_volume_read_only_nocopy():
    mp = parse_bind("data:/srv/:ro,nocopy")
    assert (mp.destination, mp.rw, mp.copy_data, mp.mode) == ("/srv", False, False, "ro,nocopy")


def test_anonymous_volume_bind():
    mp = parse_bind("/cache")
    assert (mp.type, mp.name, mp.destination) == ("volume", "", "/cache")


def test_host_bind_defaults_and_spec():
    mp = parse_bind("/host/dir/../x:/ctr:ro")
    assert (mp.type, mp.source, mp.destination, mp.rw) == ("bind", "/host/x", "/ctr", False)
    assert mp.propagation == "rprivate" and mp.create_source
    assert mp.spec() == {"destination": "/ctr", "type": "bind", "source": "/host/x",
                         "options": ["rbind", "ro", "rprivate"]}
    assert mp.inspect() == {"Type": "bind", "Source": "/host/x", "Destination": "/ctr",
                            "Mode": "ro", "RW": False, "Propagation": "rprivate"}


def test_bind_propagation_mode():
    assert parse_bind("/h:/c:rshared,z").propagation == "rshared"


@pytest.mark.parametrize("raw, message", [
    ("/foo:rw", "invalid volume specification: '/foo:rw'"),
    (":/x", "invalid volume specification: ':/x'"),
    ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
    ("/h:/c:bogus", "invalid mode: bogus"),
    ("/h:/c:ro,rw", "invalid mode: ro,rw"),
    ("data:relative", "invalid volume specification: 'data:relative': invalid mount config for "
                      "type \"volume\": invalid mount path: 'relative' mount path must be absolute"),
    ("/h:/", "invalid volume specification: '/h:/': invalid mount config for type \"bind\": "
             "invalid specification: destination can't be '/'"),
    ("a:/x", "create a: volume name is too short, names should be at least two alphanumeric "
             "characters"),
    ("no$pe:/x", 'create no$pe: "no$pe" includes invalid characters for a local volume name, '
                 'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                 "directory, use absolute path"),
])
def test_bad_binds(raw, message):
    with pytest.raises(InvalidArgument) as err:
        parse_bind(raw)
    assert err.value.message == message


def test_mount_bind_options():
    mp = parse_mount({"Type": "bind", "Source": "/src", "Target": "/dst", "ReadOnly": True,
                      "BindOptions": {"Propagation": "rslave", "NonRecursive": True}})
    assert mp.spec()["options"] == ["bind", "ro", "rslave"]
    assert not mp.create_source  # --mount never creates a missing source


def test_mount_volume_options():
    mp = parse_mount({"Type": "volume", "Source": "v1", "Target": "/d",
                      "VolumeOptions": {"NoCopy": True, "Labels": {"k": "v"},
                                        "DriverConfig": {"Name": "local",
                                                         "Options": {"type": "tmpfs",
                                                                     "device": "tmpfs"}}}})
    assert (mp.name, mp.copy_data, mp.labels, mp.driver_options["type"]) == ("v1", False, {"k": "v"}, "tmpfs")


def test_mount_tmpfs_options_become_mount_data():
    mp = parse_mount({"Type": "tmpfs", "Target": "/t",
                      "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1777,
                                       "Options": [["exec"]]}})
    assert mp.tmpfs_data == "mode=1777,size=64m,exec"
    # Docker's defaults first; the user's "exec" wins over the default noexec.
    assert mp.spec()["options"] == ["nosuid", "nodev", "rprivate", "mode=1777", "size=64m", "exec"]
    assert mp.inspect() == {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "",
                            "RW": True, "Propagation": ""}


@pytest.mark.parametrize("cfg, message", [
    ({"Type": "bind", "Target": "/x"}, 'invalid mount config for type "bind": field Source must not be empty'),
    ({"Type": "bind", "Source": "rel", "Target": "/x"},
     "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"),
    ({"Type": "bind", "Source": "/s", "Target": "/x", "BindOptions": {"Propagation": "sideways"}},
     'invalid mount config for type "bind": invalid propagation mode: sideways'),
    ({"Type": "volume", "Source": "v", "Target": "/x", "BindOptions": {}},
     'invalid mount config for type "volume": field BindOptions must not be specified'),
    ({"Type": "tmpfs", "Source": "x", "Target": "/t"},
     'invalid mount config for type "tmpfs": field Source must not be specified'),
    ({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": [["nosuid"]]}},
     'invalid mount config for type "tmpfs": invalid option: nosuid'),
    ({"Type": "volume", "Target": ""}, 'invalid mount config for type "volume": field Target must not be empty'),
    ({"Type": "nfs", "Target": "/x"}, 'invalid mount config for type "nfs": mount type unknown'),
])
def test_bad_mounts(cfg, message):
    with pytest.raises(InvalidArgument) as err:
        parse_mount(cfg)
    assert err.value.message == message


def test_tmpfs_flag():
    mp = parse_tmpfs("/run", "size=1m,mode=700")
    assert mp.spec() == {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                         "options": ["noexec", "nosuid", "nodev", "rprivate", "size=1m", "mode=700"]}
    assert not mp.in_inspect  # --tmpfs mounts are not in inspect's Mounts (as in Docker)


@pytest.mark.parametrize("dest, data, message", [
    ("rel", "", "invalid mount path: 'rel' mount path must be absolute"),
    ("/", "", "invalid specification: destination can't be '/'"),
    ("/t", "size=1m,bogus=2", "invalid tmpfs option 'bogus'"),
    ("/t", "wat", "invalid tmpfs option 'wat'"),
])
def test_bad_tmpfs(dest, data, message):
    with pytest.raises(InvalidArgument) as err:
        parse_tmpfs(dest, data)
    assert err.value.message == message


def test_merge_tmpfs_last_wins():
    assert merge_tmpfs_options(["noexec", "size=1m", "exec", "size=2m", "defaults"]) == ["exec", "size=2m"]


def test_tmpfs_size_suffixes():
    assert tmpfs_data({"SizeBytes": 3 << 30}, False) == "size=3g"
    assert tmpfs_data({"SizeBytes": 1536}, True) == "ro,size=1536"


def test_volumes_from():
    assert parse_volumes_from("web") == ("web", "rw")
    assert parse_volumes_from("web:ro") == ("web", "ro")
    with pytest.raises(InvalidArgument, match="invalid mode: rshared"):
        parse_volumes_from("web:rshared")
