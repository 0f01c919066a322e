"""The engine package (`berth`, under pycore/) for the few commands that use it.

The launcher starts Python with -S (see launcher.py), so site-packages, where the
engine and its dependencies are installed, is added only when a command asks.
"""

from __future__ import annotations

import sys


def import_site() -> None:
    if sys.flags.no_site and "site" not in sys.modules:
        import site
        site.main()
