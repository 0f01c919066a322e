"""berthd: one daemon per data root, serving the Engine API on a unix socket.

:mod:`berth.daemon.main` is the ``berthd`` entry point (arguments, root lock,
socket, signals); :class:`berth.daemon.engine.Engine` holds the services the
API handlers use.
"""
