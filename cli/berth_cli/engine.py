"""The engine package (`berth`, under pycore/) for the few commands that use it.

The launcher starts Python with -S (see launcher.py), so site-packages, where the
engine and its dependencies are installed, is added only when a command asks.
"""

from __future__ import annotations

import sys


_site_added = False


def import_site() -> None:
    global _site_added
    if sys.flags.no_site and not _site_added:
        import site
        site.main()
        _site_added = True
