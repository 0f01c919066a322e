"""Containers: records, lifecycle and the runtime spec of each container.

Public interface:
- :class:`ContainerService` (``get``, ``list``, ``inspect``, ``create``,
  ``start``, ``stop``, ``kill``, ``restart``, ``pause``/``unpause``,
  ``remove``, ``wait_future``, ``rename``, ``update``, ``resize``, ``top``,
  ``stats_sample``, exec, ``mount_rootfs``/``unmount_rootfs``/``rootfs``,
  ``start_background``/``stop_background``/``close``)
- :class:`Container` and :class:`State` (records other components read)
- :class:`ExecProcess`
- :mod:`berth.containers.logs` (json-file log reading, multiplexed frames)
"""

from berth.containers.execs import ExecProcess
from berth.containers.model import Container, State
from berth.containers.service import ContainerService

__all__ = ["Container", "ContainerService", "ExecProcess", "State"]
