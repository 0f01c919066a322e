"""Write the `berth` launcher: `python -m berth_cli.launcher PATH`.

pip's console script starts Python with `site`, which costs a few milliseconds on
every run (site-packages, .pth files, setuptools' distutils hook) although the CLI
is stdlib only. This launcher runs the same interpreter with -S and puts the CLI's
own directory first on sys.path; the few commands that use the engine package
call berth_cli.engine.import_site() first.
"""

from __future__ import annotations

import os
import sys

TEMPLATE = """#!{python} -S
# berth launcher, written by `python -m berth_cli.launcher` (make build)
import sys
sys.path.insert(0, {cli_dir!r})
from berth_cli.main import entry
entry()
"""


def write(path: str) -> None:
    cli_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = TEMPLATE.format(python=sys.executable, cli_dir=cli_dir)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m berth_cli.launcher PATH")
    write(sys.argv[1])
