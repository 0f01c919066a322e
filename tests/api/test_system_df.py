"""/system/df reports images, containers, volumes and build cache together."""

import json


def test_df_counts_containers_and_volumes(daemon, busybox_rootfs):
    daemon.berth("import", str(busybox_rootfs), "dfbox:1")
    daemon.berth("volume", "create", "dfvol")
    daemon.berth("run", "--name", "dfc", "-v", "dfvol:/data", "dfbox:1",
                 "sh", "-c", "echo hello > /data/f")
    usage = json.loads(daemon.docker("system", "df", "--format", "{{json .}}").stdout.splitlines()[0])
    assert usage["Type"] == "Images" and usage["TotalCount"] == "1"
    verbose = daemon.docker("system", "df", "-v").stdout
    assert "dfvol" in verbose and "dfc" in verbose
    lines = {line.split()[0]: line for line in daemon.berth("system", "df").stdout.splitlines()[1:]}
    assert lines["Containers"].split()[1] == "1"
    assert lines["Local"].split()[2] == "1"  # "Local Volumes   1   1 ..."
