"""The Dockerfile builder.

Public interface:
- :class:`BuildService` (``prepare(BuildRequest) -> PreparedBuild``,
  ``PreparedBuild.run(emit, cancel) -> image ID``, ``prune``, ``df``,
  ``cancel``) and :class:`BuildRequest`;
- :func:`berth.builder.dockerfile.parse` and
  :func:`berth.builder.instructions.parse_stages` (the language);
- :class:`berth.builder.ignore.PatternMatcher` (``.dockerignore``).

Modules: ``dockerfile`` (parser), ``shell`` (variable substitution),
``instructions`` (typed instructions and stages), ``ignore``, ``checksum``
(file digests with a metadata cache), ``context`` (COPY sources),
``fsview`` (merged views of layers), ``copier`` (writing layers),
``runner`` (RUN containers), ``layers`` (layer commit), ``cache`` (the build
cache tables), ``graph`` (stage graph, ordered output), ``steps`` (one
stage's instructions), ``service``.
"""

from berth.builder.errors import BuildError, RunFailed
from berth.builder.service import BuildRequest, BuildService, PreparedBuild

__all__ = ["BuildError", "BuildRequest", "BuildService", "PreparedBuild", "RunFailed"]
