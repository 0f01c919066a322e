"""Each command against a scripted Engine API: the requests it makes and the exact
output, docker's, for known answers (fixed clock: 2024-01-02T03:04:05Z)."""

import json
import os

import pytest
from cli_fakeapi import NOW, Reply

BUSYBOX_ID = "sha256:65b69ccfd229b196402817ecf2dc832d13ac31985305695b2d2247df7108416b"
DANGLING_ID = "sha256:" + "e0" * 32
DIGEST = "sha256:" + "d" * 64

IMAGES = [
    {"Id": BUSYBOX_ID, "ParentId": "", "RepoTags": ["busybox:latest", "mybox:1"],
     "RepoDigests": [f"busybox@{DIGEST}"], "Created": NOW - 120, "Size": 4264000,
     "SharedSize": -1, "VirtualSize": 4264000, "Labels": {}, "Containers": -1},
    {"Id": DANGLING_ID, "ParentId": "", "RepoTags": [], "RepoDigests": [], "Created": NOW - 3 * 86400,
     "Size": 1200, "SharedSize": 0, "VirtualSize": 1200, "Labels": None, "Containers": 2},
]


@pytest.fixture
def api(fake_api):
    fake_api.route("GET", "/images/json", Reply(json_body=IMAGES))
    return fake_api


@pytest.fixture
def berth(run_cli, api):
    return lambda *argv, **kw: run_cli(*argv, host=api.host, **kw)


# -- images -----------------------------------------------------------------------------

def test_images_default_table(berth, api):
    r = berth("images")
    assert (r.code, r.err) == (0, "")
    assert r.out == (
        "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE\n"
        "busybox      latest    65b69ccfd229   2 minutes ago   4.26MB\n"
        "mybox        1         65b69ccfd229   2 minutes ago   4.26MB\n"
        "<none>       <none>    e0e0e0e0e0e0   3 days ago      1.2kB\n")
    req = api.last("GET", "/images/json")
    assert req.versioned and req.query == {}


def test_images_quiet_no_trunc_and_all(berth, api):
    assert berth("images", "-q").out == "65b69ccfd229\n65b69ccfd229\ne0e0e0e0e0e0\n"
    assert berth("image", "ls", "-aq", "--no-trunc").out == f"{BUSYBOX_ID}\n{BUSYBOX_ID}\n{DANGLING_ID}\n"
    assert api.last("GET", "/images/json").param("all") == "1"


def test_images_digests_column(berth):
    out = berth("images", "--digests").out.splitlines()
    assert out[0] == f"REPOSITORY   TAG       {'DIGEST':<74}IMAGE ID       CREATED         SIZE"
    assert out[1] == f"busybox      latest    {DIGEST:<74}65b69ccfd229   2 minutes ago   4.26MB"
    assert out[2] == f"mybox        1         {'<none>':<74}65b69ccfd229   2 minutes ago   4.26MB"


def test_images_custom_formats(berth):
    assert berth("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").out == (
        "busybox:latest 4.26MB\nmybox:1 4.26MB\n<none>:<none> 1.2kB\n")
    assert berth("images", "--format", "table {{.ID}}\\t{{.Containers}}\\t{{.UniqueSize}}").out == (
        "IMAGE ID       CONTAINERS   UNIQUE SIZE\n"
        "65b69ccfd229   N/A          N/A\n65b69ccfd229   N/A          N/A\n"
        "e0e0e0e0e0e0   2            1.2kB\n")
    first = json.loads(berth("images", "--format", "json").out.splitlines()[0])
    assert first == {"Containers": "N/A", "CreatedAt": "2024-01-02 03:02:05 +0000 UTC",
                     "CreatedSince": "2 minutes ago", "Digest": "<none>", "ID": "65b69ccfd229",
                     "Repository": "busybox", "SharedSize": "N/A", "Size": "4.26MB", "Tag": "latest",
                     "UniqueSize": "N/A", "VirtualSize": "4.264MB"}


def test_images_filters_and_reference_argument(berth, api):
    berth("images", "--filter", "dangling=true", "-f", "label=a=b", "-f", "label=c", "busybox:*")
    filters = json.loads(api.last("GET", "/images/json").param("filters"))
    assert filters == {"dangling": {"true": True}, "label": {"a=b": True, "c": True},
                       "reference": {"busybox:*": True}}


def test_images_bad_template(berth):
    r = berth("images", "--format", "{{.Nope}}")
    assert r.code == 1
    assert r.err == ('template parsing error: template: :1:2: executing "" at <.Nope>: '
                     "can't evaluate field Nope in type imageContext\n")
    r = berth("images", "--format", "{{.ID")
    assert (r.code, r.err) == (1, "template parsing error: template: :1: unclosed action\n")


# -- inspect ----------------------------------------------------------------------------

INSPECT = {"Id": BUSYBOX_ID, "RepoTags": ["busybox:latest"], "Config": {"Cmd": ["sh"], "Labels": {"x": "1"}},
           "Size": 4264000, "Os": "linux"}


@pytest.fixture
def inspect_api(api):
    def handler(req):
        return Reply(json_body=INSPECT)
    api.route("GET", "/images/busybox/json", handler)
    api.route("GET", "/images/nope/json", Reply(404, {"message": "No such image: nope:latest"}))
    return api


def test_inspect_prints_an_indented_json_array(berth, inspect_api):
    r = berth("image", "inspect", "busybox")
    assert r.code == 0
    assert r.out == json.dumps([INSPECT], indent=4) + "\n"
    assert r.out.startswith('[\n    {\n        "Id": ')


def test_inspect_format(berth, inspect_api):
    r = berth("image", "inspect", "-f", "{{.ID}} {{json .Config.Cmd}} {{index .Config.Labels \"x\"}}", "busybox", "busybox")
    assert r.out == f"{BUSYBOX_ID} [\"sh\"] 1\n" * 2
    r = berth("inspect", "--format", "{{.Nope}}", "busybox")
    assert r.code == 1
    assert r.err == 'template parsing error: template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"\n'


def test_inspect_missing_image(berth, inspect_api):
    r = berth("image", "inspect", "nope")
    assert (r.code, r.out, r.err) == (1, "[]\n", "Error: No such image: nope\n")
    r = berth("image", "inspect", "--format", "{{.Os}}", "nope", "busybox")
    assert (r.code, r.out, r.err) == (1, "linux\n", "Error: No such image: nope\n")
    r = berth("inspect", "nope")
    assert (r.code, r.out, r.err) == (1, "[]\n", "Error: No such object: nope\n")
    r = berth("inspect", "--type", "image", "nope")
    assert r.err == "Error: No such image: nope\n"
    r = berth("inspect", "--type", "bogus", "nope")
    assert (r.code, r.err) == (1, '"bogus" is not a valid value for --type\n')


# -- tag / rmi -----------------------------------------------------------------------------

def test_tag_normalizes_the_target(berth, api):
    api.route("POST", "/images/busybox/tag", Reply(201))
    assert berth("tag", "busybox", "docker.io/library/mybox").code == 0
    req = api.last("POST", "/images/busybox/tag")
    assert (req.param("repo"), req.param("tag")) == ("mybox", "latest")
    assert berth("image", "tag", "busybox", "localhost:5000/team/app:v2").code == 0
    req = api.last("POST", "/images/busybox/tag")
    assert (req.param("repo"), req.param("tag")) == ("localhost:5000/team/app", "v2")


def test_tag_rejects_bad_targets_without_asking_the_daemon(berth, api):
    before = len(api.requests)
    r = berth("tag", "busybox", "Upper:case")
    assert r.code == 1
    assert r.err == ('Error parsing reference: "Upper:case" is not a valid repository/tag: '
                     "invalid reference format: repository name (library/Upper) must be lowercase\n")
    r = berth("tag", "busybox", f"x@{DIGEST}")
    assert r.err == "refusing to create a tag with a digest reference\n"
    assert len(api.requests) == before


def test_tag_missing_source_is_a_daemon_error(berth, api):
    api.route("POST", "/images/nope/tag", Reply(404, {"message": "No such image: nope:latest"}))
    r = berth("tag", "nope", "x")
    assert (r.code, r.err) == (1, "Error response from daemon: No such image: nope:latest\n")


def test_rmi_continues_after_a_failure_and_exits_1(berth, api):
    api.route("DELETE", "/images/a", Reply(json_body=[{"Untagged": "a:latest"}, {"Deleted": "sha256:aa"}]))
    api.route("DELETE", "/images/nope", Reply(404, {"message": "No such image: nope:latest"}))
    api.route("DELETE", "/images/b", Reply(json_body=[{"Untagged": "b:latest"}]))
    r = berth("rmi", "a", "nope", "b")
    assert r.code == 1
    assert r.out == "Untagged: a:latest\nDeleted: sha256:aa\nUntagged: b:latest\n"
    assert r.err == "Error response from daemon: No such image: nope:latest\n"
    assert [req.path for req in api.requests if req.method == "DELETE"] == ["/images/a", "/images/nope", "/images/b"]


def test_rmi_force_tolerates_missing_images_but_not_conflicts(berth, api):
    api.route("DELETE", "/images/nope", Reply(404, {"message": "No such image: nope:latest"}))
    api.route("DELETE", "/images/used", Reply(409, {"message": "conflict: unable to delete used"}))
    r = berth("image", "rm", "-f", "nope")
    assert (r.code, r.err) == (0, "Error response from daemon: No such image: nope:latest\n")
    assert api.last("DELETE", "/images/nope").param("force") == "1"
    r = berth("image", "remove", "--force", "--no-prune", "nope", "used")
    assert r.code == 1
    assert r.err.endswith("Error response from daemon: conflict: unable to delete used\n")
    assert api.last("DELETE", "/images/used").param("noprune") == "1"


# -- history --------------------------------------------------------------------------------

HISTORY = [
    {"Id": BUSYBOX_ID, "Created": NOW - 3600, "CreatedBy": "/bin/sh -c #(nop)  CMD [\"sh\"]\twith tab",
     "Tags": ["busybox:latest"], "Size": 0, "Comment": ""},
    {"Id": "<missing>", "Created": NOW - 2 * 86400,
     "CreatedBy": "/bin/sh -c #(nop) ADD file:6f88a8bd7c8c2b3b4f5c6d7e8f9a0b1c2d3e4f5 in / ",
     "Tags": None, "Size": 4264000, "Comment": "Imported from -"},
]


def test_history_table(berth, api):
    api.route("GET", "/images/busybox/history", Reply(json_body=HISTORY))
    r = berth("history", "busybox")
    assert r.code == 0
    assert r.out == (
        "IMAGE          CREATED             CREATED BY                                      SIZE      COMMENT\n"
        "65b69ccfd229   About an hour ago   /bin/sh -c #(nop)  CMD [\"sh\"] with tab          0B        \n"
        "<missing>      2 days ago          /bin/sh -c #(nop) ADD file:6f88a8bd7c8c2b3b4…   4.26MB    Imported from -\n")


def test_history_non_human_no_trunc_and_quiet(berth, api):
    api.route("GET", "/images/busybox/history", Reply(json_body=HISTORY))
    lines = berth("image", "history", "-H=false", "--no-trunc", "busybox").out.splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "AT", "CREATED", "BY", "SIZE", "COMMENT"]
    assert lines[1].split("   ")[:3] == [BUSYBOX_ID, "2024-01-02T02:04:05Z", '/bin/sh -c #(nop)  CMD ["sh"] with tab']
    assert lines[2].endswith("/bin/sh -c #(nop) ADD file:6f88a8bd7c8c2b3b4f5c6d7e8f9a0b1c2d3e4f5 in /    "
                             "4264000   Imported from -")
    assert berth("history", "-q", "busybox").out == "65b69ccfd229\n<missing>\n"
    assert berth("history", "--format", "{{.ID}}|{{.Size}}|{{.Comment}}", "busybox").out == (
        "65b69ccfd229|0B|\n<missing>|4.26MB|Imported from -\n")


# -- import / load / save ----------------------------------------------------------------------

def _stream_reply(*messages):
    return Reply(chunks=[json.dumps(m).encode() + b"\r\n" for m in messages],
                 content_type="application/json")


def test_import_streams_a_local_file_as_the_body(berth, api, workdir):
    tarball = workdir / "rootfs.tar"
    tarball.write_bytes(os.urandom(300_000))
    api.route("POST", "/images/create", _stream_reply({"status": "sha256:" + "f" * 64}))
    r = berth("import", "-c", "CMD [\"sh\"]", "--change", "ENV A=1", "-m", "hello", str(tarball), "busybox:latest")
    assert (r.code, r.out, r.err) == (0, "sha256:" + "f" * 64 + "\n", "")
    req = api.last("POST", "/images/create")
    assert req.body == tarball.read_bytes()
    assert req.headers.get("Content-Length") == str(300_000)
    assert req.query == {"fromSrc": ["-"], "repo": ["busybox:latest"], "message": ["hello"],
                         "changes": ['CMD ["sh"]', "ENV A=1"]}


def test_import_from_stdin_and_url(berth, api):
    api.route("POST", "/images/create", _stream_reply({"status": "sha256:abc"}))
    assert berth("import", "-", stdin=b"tar bytes").code == 0
    req = api.last("POST", "/images/create")
    assert (req.body, req.param("fromSrc")) == (b"tar bytes", "-")
    assert berth("image", "import", "http://127.0.0.1:9/rootfs.tar", "x").code == 0
    req = api.last("POST", "/images/create")
    assert (req.body, req.param("fromSrc"), req.param("repo")) == (b"", "http://127.0.0.1:9/rootfs.tar", "x")


def test_import_errors(berth, api, workdir):
    r = berth("import", str(workdir / "missing.tar"))
    assert (r.code, r.err) == (1, f"open {workdir}/missing.tar: no such file or directory\n")
    (workdir / "t.tar").write_bytes(b"x")
    r = berth("import", str(workdir / "t.tar"), "Bad")
    assert (r.code, r.err) == (1, "invalid reference format: repository name (library/Bad) must be lowercase\n")
    api.route("POST", "/images/create", _stream_reply({"errorDetail": {"message": "unexpected EOF"},
                                                       "error": "unexpected EOF"}))
    r = berth("import", str(workdir / "t.tar"))
    assert (r.code, r.err) == (1, "unexpected EOF\n")


def test_load_from_file_and_stdin(berth, api, workdir):
    archive = workdir / "images.tar"
    archive.write_bytes(b"archive" * 1000)
    api.route("POST", "/images/load", _stream_reply({"stream": "Loaded image: busybox:latest\n"}))
    r = berth("load", "-i", str(archive))
    assert (r.code, r.out) == (0, "Loaded image: busybox:latest\n")
    req = api.last("POST", "/images/load")
    assert req.body == archive.read_bytes() and req.param("quiet") == "1"
    assert berth("image", "load", "-q", stdin=b"piped").code == 0
    assert api.last("POST", "/images/load").body == b"piped"


def test_load_refuses_a_terminal_and_reports_missing_files(berth, api, workdir):
    before = len(api.requests)
    r = berth("load", stdin_tty=True)
    assert (r.code, r.err) == (1, "requested load from stdin, but stdin is empty\n")
    r = berth("load", "-i", str(workdir / "nope.tar"))
    assert (r.code, r.err) == (1, f"open {workdir}/nope.tar: no such file or directory\n")
    assert len(api.requests) == before


def test_save_to_a_file_and_to_stdout(berth, api, workdir):
    payload = os.urandom(1 << 20)
    api.route("GET", "/images/get", Reply(chunks=[payload[:1000], payload[1000:]], content_type="application/x-tar"))
    out = workdir / "out.tar"
    r = berth("save", "-o", str(out), "busybox", "mybox:1")
    assert (r.code, r.out, r.err) == (0, "", "")
    assert out.read_bytes() == payload
    assert api.last("GET", "/images/get").query == {"names": ["busybox", "mybox:1"]}
    r = berth("image", "save", "busybox")
    assert r.out_bytes == payload
    assert sorted(os.listdir(workdir)) == ["api.sock", "out.tar"]


def test_save_refuses_a_terminal_and_bad_paths(berth, api, workdir):
    before = len(api.requests)
    r = berth("save", "busybox", stdout_tty=True)
    assert (r.code, r.err) == (1, "cowardly refusing to save to a terminal. Use the -o flag or redirect\n")
    r = berth("save", "-o", str(workdir / "no" / "x.tar"), "busybox")
    assert r.err == f'failed to save image: invalid output path: directory "{workdir}/no" does not exist\n'
    assert len(api.requests) == before


def test_save_leaves_no_file_when_the_daemon_fails(berth, api, workdir):
    api.route("GET", "/images/get", Reply(404, {"message": "No such image: nope:latest"}))
    r = berth("save", "-o", str(workdir / "x.tar"), "nope")
    assert (r.code, r.err) == (1, "Error response from daemon: No such image: nope:latest\n")
    # a stream cut short (chunked body without its last chunk)
    api.route("GET", "/images/get", Reply(body=b"a" * 100, headers={"Content-Length": "5000"},
                                          close_delimited=True))
    r = berth("save", "-o", str(workdir / "x.tar"), "busybox")
    assert r.code == 1 and "closed before the whole response arrived" in r.err
    assert sorted(os.listdir(workdir)) == ["api.sock"]


# -- prune --------------------------------------------------------------------------------------

PRUNE_REPORT = {"ImagesDeleted": [{"Untagged": "old:1"}, {"Deleted": "sha256:aa"}, {"Deleted": "sha256:bb"}],
                "SpaceReclaimed": 4264000}


def test_image_prune_asks_first(berth, api):
    api.route("POST", "/images/prune", Reply(json_body=PRUNE_REPORT))
    r = berth("image", "prune", stdin=b"n\n")
    assert (r.code, r.err) == (0, "")
    assert r.out == "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
    assert not [q for q in api.requests if q.path == "/images/prune"]
    r = berth("image", "prune", "-a", stdin=b"y\n")
    assert r.out == ("WARNING! This will remove all images without at least one container associated to them.\n"
                     "Are you sure you want to continue? [y/N] Deleted Images:\nuntagged: old:1\n"
                     "deleted: sha256:aa\ndeleted: sha256:bb\n\nTotal reclaimed space: 4.264MB\n")
    assert json.loads(api.last("POST", "/images/prune").param("filters")) == {"dangling": {"false": True}}


def test_image_prune_force_with_filters(berth, api):
    api.route("POST", "/images/prune", Reply(json_body={"ImagesDeleted": None, "SpaceReclaimed": 0}))
    r = berth("image", "prune", "-f", "--filter", "until=24h")
    assert (r.code, r.out) == (0, "Total reclaimed space: 0B\n")
    assert json.loads(api.last("POST", "/images/prune").param("filters")) == {
        "until": {"24h": True}, "dangling": {"true": True}}


def test_system_prune_prompt_lists_what_goes(berth, api):
    api.route("POST", "/images/prune", Reply(json_body=PRUNE_REPORT))
    api.route("POST", "/containers/prune", Reply(json_body={"ContainersDeleted": None, "SpaceReclaimed": 0}))
    r = berth("system", "prune", "--filter", "label=a=b", "--filter", "until=1h", stdin=b"\n")
    assert r.out == ("WARNING! This will remove:\n  - all stopped containers\n  - all dangling images\n\n"
                     "  Items to be pruned will be filtered with:\n  - label=a=b\n  - until=1h\n\n"
                     "Are you sure you want to continue? [y/N] ")
    r = berth("system", "prune", "-af")
    assert r.out == ("Deleted Images:\nuntagged: old:1\ndeleted: sha256:aa\ndeleted: sha256:bb\n\n"
                     "Total reclaimed space: 4.264MB\n")


# -- system df / version / info ------------------------------------------------------------------

DF = {
    "LayersSize": 5264000,
    "Images": [dict(IMAGES[0], SharedSize=0, Containers=1), dict(IMAGES[1], Containers=0)],
    "Containers": [{"Id": "c" * 64, "Image": "busybox", "Command": "sh -c 'sleep 1000'", "SizeRw": 2000,
                    "Created": NOW - 60, "State": "running", "Status": "Up 1 minute", "Names": ["/web"],
                    "Mounts": [{"Type": "volume"}]}],
    "Volumes": [{"Name": "data", "UsageData": {"Size": 1000, "RefCount": 0}}],
    "BuildCache": [],
}


def test_system_df(berth, api):
    api.route("GET", "/system/df", Reply(json_body=DF))
    r = berth("system", "df")
    assert r.code == 0
    assert r.out == (
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"
        "Images          2         1         5.264MB   1MB (18%)\n"
        "Containers      1         1         2kB       0B (0%)\n"
        "Local Volumes   1         0         1kB       1kB (100%)\n"
        "Build Cache     0         0         0B        0B\n")
    assert berth("system", "df", "--format", "{{.Type}}={{.Size}}").out == (
        "Images=5.264MB\nContainers=2kB\nLocal Volumes=1kB\nBuild Cache=0B\n")


def test_system_df_verbose(berth, api):
    api.route("GET", "/system/df", Reply(json_body=DF))
    out = berth("system", "df", "-v").out
    assert out.startswith(
        "Images space usage:\n\n"
        "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE      SHARED SIZE   UNIQUE SIZE   CONTAINERS\n"
        "busybox      latest    65b69ccfd229   2 minutes ago   4.26MB    0B            4.264MB       1\n"
        "<none>       <none>    e0e0e0e0e0e0   3 days ago      1.2kB     0B            1.2kB         0\n"
        "\nContainers space usage:\n\n"
        "CONTAINER ID   IMAGE     COMMAND                LOCAL VOLUMES   SIZE      CREATED              STATUS        NAMES\n"
        "cccccccccccc   busybox   \"sh -c 'sleep 1000'\"   1               2kB       About a minute ago   Up 1 minute   web\n"
        "\nLocal Volumes space usage:\n\n"
        "VOLUME NAME   LINKS     SIZE\n"
        "data          0         1kB\n"
        "\nBuild cache usage: 0B\n\n"
        "CACHE ID   CACHE TYPE   SIZE      CREATED   LAST USED   USAGE     SHARED\n")


def test_version_shows_client_and_server(berth, api):
    api.route("GET", "/version", Reply(json_body={
        "Platform": {"Name": "berth"}, "Version": "0.1.0", "ApiVersion": "1.41", "MinAPIVersion": "1.24",
        "Os": "linux", "Arch": "amd64", "Components": [{"Name": "Engine", "Version": "0.1.0", "Details": {
            "ApiVersion": "1.41", "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64",
            "Experimental": "false"}}]}))
    r = berth("version")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0] == "Client: berth"
    assert lines[1] == " Version:           0.1.0"
    assert lines[lines.index("Server: berth") + 1:] == [
        " Engine:", "  Version:          0.1.0", "  API version:      1.41 (minimum version 1.24)",
        "  OS/Arch:          linux/amd64", "  Experimental:     false"]
    assert berth("version", "--format", "{{.Client.Version}} {{.Server.APIVersion}}").out == "0.1.0 1.41\n"


def test_version_without_a_daemon_prints_the_client_then_fails(run_cli, workdir):
    r = run_cli("version", host=f"unix://{workdir}/none.sock")
    assert r.code == 1
    assert r.out.startswith("Client: berth\n") and "Server" not in r.out
    assert r.err == f"Cannot connect to the berth daemon at unix://{workdir}/none.sock. Is the berth daemon running?\n"


def test_info(berth, api):
    api.route("GET", "/info", Reply(json_body={
        "ID": "X", "Containers": 3, "ContainersRunning": 1, "ContainersPaused": 0, "ContainersStopped": 2,
        "Images": 5, "Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]],
        "ServerVersion": "0.1.0", "NCPU": 2, "MemTotal": 4111855616, "DockerRootDir": "/var/lib/berth",
        "OSType": "linux", "Name": "host", "Warnings": ["WARNING: no swap limit support"]}))
    r = berth("info")
    assert r.code == 0
    assert r.out.startswith("Client:\n Version:    0.1.0\n Context:    default\n Debug Mode: false\n\nServer:\n"
                            " Containers: 3\n  Running: 1\n  Paused: 0\n  Stopped: 2\n Images: 5\n"
                            " Server Version: 0.1.0\n Storage Driver: overlay2\n  Backing Filesystem: extfs\n")
    assert " Total Memory: 3.829GiB\n" in r.out and " Docker Root Dir: /var/lib/berth\n" in r.out
    assert r.err == "WARNING: no swap limit support\n"
    assert berth("info", "--format", "{{.Images}} {{.ClientInfo.Context}}").out == "5 default\n"


# -- events -------------------------------------------------------------------------------------

EVENTS = [
    {"status": "tag", "id": BUSYBOX_ID, "Type": "image", "Action": "tag",
     "Actor": {"ID": BUSYBOX_ID, "Attributes": {"name": "mybox:1", "alpha": "x"}},
     "scope": "local", "time": NOW, "timeNano": NOW * 1_000_000_000 + 5},
    {"Type": "network", "Action": "create", "Actor": {"ID": "n1", "Attributes": {}},
     "scope": "local", "time": NOW + 1, "timeNano": (NOW + 1) * 1_000_000_000},
]


def _event_stream():
    # split mid-object to check the decoder waits for the rest
    data = b"".join(json.dumps(e).encode() + b"\n" for e in EVENTS)
    return Reply(chunks=[data[:37], data[37:200], data[200:]], content_type="application/json")


def test_events_pretty(berth, api):
    api.route("GET", "/events", _event_stream())
    r = berth("events", "--since", "10m", "--until", "1704164700")
    assert r.code == 0
    assert r.out == (f"2024-01-02T03:04:05.000000005Z image tag {BUSYBOX_ID} (alpha=x, name=mybox:1)\n"
                     "2024-01-02T03:04:06.000000000Z network create n1\n")
    req = api.last("GET", "/events")
    assert (req.param("since"), req.param("until")) == (str(NOW - 600), "1704164700")


def test_events_formats(berth, api):
    api.route("GET", "/events", _event_stream())
    r = berth("system", "events", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}|{{.Status}}")
    assert r.out == "image tag mybox:1|tag\nnetwork create <no value>|\n"
    lines = berth("events", "--format", "json").out.splitlines()
    assert json.loads(lines[0]) == EVENTS[0]
    assert list(json.loads(lines[1])) == ["Type", "Action", "Actor", "scope", "time", "timeNano"]
    r = berth("events", "--format", "{{.Bogus}}")
    assert r.code == 64
    assert r.err == ('Error parsing format: template: :1:2: executing "" at <.Bogus>: '
                     "can't evaluate field Bogus in type events.Message\n")


@pytest.mark.parametrize("value, expected", [
    ("1h", str(NOW - 3600)),
    ("1h30m", str(NOW - 5400)),
    ("2024-01-02", "1704153600.000000000"),
    ("2024-01-02T03:04:05Z", "1704164645.000000000"),
    ("2024-01-02T03:04:05.5+01:00", "1704161045.500000000"),
    ("2024-01-02T03", "1704164400.000000000"),
    ("1704164645", "1704164645"),
    ("1704164645.123", "1704164645.123"),
])
def test_events_time_arguments(berth, api, value, expected):
    api.route("GET", "/events", Reply(chunks=[]))
    assert berth("events", "--since", value).code == 0
    assert api.last("GET", "/events").param("since") == expected


def test_events_bad_time(berth, api):
    r = berth("events", "--since", "yesterday")
    assert (r.code, r.err) == (1, 'failed to parse value as time or duration: "yesterday"\n')


# -- errors, debug -----------------------------------------------------------------------------

def test_daemon_errors_are_reported_like_docker(berth, api):
    api.route("GET", "/images/json", Reply(500, body=b"disk on fire\n", content_type="text/plain"))
    r = berth("images")
    assert (r.code, r.out, r.err) == (1, "", "Error response from daemon: disk on fire\n")


def test_cannot_connect(run_cli, workdir):
    r = run_cli("images", host=f"unix://{workdir}/none.sock")
    assert r.code == 1
    assert r.err == f"Cannot connect to the berth daemon at unix://{workdir}/none.sock. Is the berth daemon running?\n"
    r = run_cli("-H", "tcp://127.0.0.1:2375", "images")
    assert (r.code, r.err) == (1, "unsupported host 'tcp://127.0.0.1:2375': berth speaks to its daemon over "
                               "unix:// sockets only\n")


def test_host_flag_beats_environment(run_cli, api, workdir):
    r = run_cli("-H", api.host, "images", "-q", host=f"unix://{workdir}/none.sock")
    assert r.code == 0 and r.out.startswith("65b69ccfd229\n")


def test_debug_logs_requests(berth):
    r = berth("-D", "images", "-q")
    assert r.code == 0
    assert "DEBU[0000] GET /v1.41/images/json\n" in r.err and "-> 200 OK" in r.err
