"""Volumes and the container filesystem.

Public interface:

- :class:`VolumeService` (``engine.volumes``): volumes of the ``local``
  driver (create, inspect, list, remove, prune, disk_usage) and each
  container's mounts: ``prepare_mounts`` at create (returns the runtime spec's
  mount entries), ``release`` at removal, ``mounts_inspect`` for inspect,
  ``mount_points`` for the filesystem endpoints;
- :mod:`berth.volumes.mounts`: Docker's parsing of ``-v``, ``--mount`` and
  ``--tmpfs`` (:class:`MountPoint`);
- :mod:`berth.volumes.rootview`: confined views of a container's ``/``
  (:class:`RootView`);
- :mod:`berth.volumes.containerfs`: path stat, ``cp``/``export`` tar streams,
  archive extraction and tree copies on such views;
- :mod:`berth.volumes.changes`: ``docker diff`` of an overlay upper dir.
"""

from berth.volumes.mounts import MountPoint
from berth.volumes.rootview import RootView, ViewMount
from berth.volumes.service import VolumeService

__all__ = ["MountPoint", "RootView", "ViewMount", "VolumeService"]
