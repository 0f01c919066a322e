"""Helpers shared by the container filesystem tests."""

from __future__ import annotations

import io
import json
import tarfile


def make_tar(files: dict[str, bytes | None], *, mode: int = 0o644, owner=(0, 0)) -> bytes:
    """A tar of regular files (bytes) and directories (None), in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.uid, info.gid = owner
            info.mtime = 1_600_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_tar(data: bytes) -> dict[str, tarfile.TarInfo]:
    tar = tarfile.open(fileobj=io.BytesIO(data))
    return {m.name: m for m in tar.getmembers()}


def post_json(api, path, body):
    return api.post(path, body=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"})
