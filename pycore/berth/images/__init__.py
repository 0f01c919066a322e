"""Images: references, manifests and configs, and the ImageService the
daemon calls (list, inspect, history, tag, remove, import, load, save,
prune, gc, df; register_image for pull and build).

Public interface:
- :class:`ImageService`, :class:`LayerBlob`, :class:`Lease`
- :mod:`berth.images.reference` (``parse_normalized``, ``parse_any``, ``Reference``)
- :mod:`berth.images.mediatypes`, :mod:`berth.images.manifest`
- :func:`berth.images.changes.apply_changes` (``--change`` instructions)
"""

from berth.images.reference import Reference, parse_any, parse_normalized
from berth.images.lease import Lease
from berth.images.service import ImageService
from berth.images.staging import LayerBlob

__all__ = ["ImageService", "LayerBlob", "Lease", "Reference", "parse_any", "parse_normalized"]
