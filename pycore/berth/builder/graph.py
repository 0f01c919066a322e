"""The stage graph of a Dockerfile: which stages the target needs (through
``FROM <stage>``, ``COPY --from`` and ``RUN --mount=from=``), cycles, and an
output that keeps each stage's lines together while stages run in parallel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from .errors import BuildError
from .instructions import Stage


@dataclass
class StageRef:
    """What a ``--from`` / FROM value names: a stage (index) or an image."""

    stage: int | None = None
    image: str = ""


def resolve_ref(value: str, stages: list[Stage], current: int, from_line: bool) -> StageRef:
    """A stage name (any stage for ``--from``, an earlier one for FROM), a
    stage index (``--from=0``), or else an image reference."""
    lowered = value.lower()
    for stage in stages:
        if stage.name and stage.name == lowered:
            if from_line and stage.index >= current:
                break  # FROM only sees the stages above it
            return StageRef(stage=stage.index)
    if not from_line and value.isdigit():
        index = int(value)
        if index == current:
            raise BuildError(f"invalid from flag value {value}: refers to current build stage")
        if index >= len(stages):
            raise BuildError(f"invalid from flag value {value}: index out of bounds")
        return StageRef(stage=index)
    return StageRef(image=value)


@dataclass
class StagePlan:
    stage: Stage
    deps: set[int] = field(default_factory=set)


def needed_stages(plans: list[StagePlan], target: int) -> list[int]:
    """The stages ``target`` depends on (itself included), in index order;
    BuildError on a dependency cycle."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = [WHITE] * len(plans)
    order: list[int] = []

    def visit(i: int) -> None:
        color[i] = GREY
        for dep in sorted(plans[i].deps):
            if color[dep] == GREY:
                raise BuildError(f"circular dependency detected on stage: "
                                 f"{plans[dep].stage.label()}")
            if color[dep] == WHITE:
                visit(dep)
        color[i] = BLACK
        order.append(i)

    visit(target)
    return sorted(order)


def stage_dependencies(stage: Stage, stages: list[Stage], base: str, from_values: list[str]
                       ) -> set[int]:
    """Stages named by this stage's FROM (``base``, expanded) and by its
    ``COPY --from`` / ``RUN --mount from=`` values (expanded)."""
    deps: set[int] = set()
    ref = resolve_ref(base, stages, stage.index, from_line=True)
    if ref.stage is not None:
        deps.add(ref.stage)
    for value in from_values:
        ref = resolve_ref(value, stages, stage.index, from_line=False)
        if ref.stage is not None:
            deps.add(ref.stage)
    return deps


class OrderedOutput:
    """Progress messages of parallel stages, shown stage by stage: the stage
    first in line writes through; the others are held until their turn."""

    def __init__(self, emit: Callable[[dict], None], order: list[int]):
        self._emit = emit
        self._order = list(order)
        self._pos = 0
        self._held: dict[int, list[dict]] = {i: [] for i in order}
        self._done: set[int] = set()
        self._lock = threading.Lock()

    def write(self, stage: int, message: dict) -> None:
        with self._lock:
            if self._pos < len(self._order) and self._order[self._pos] == stage:
                self._emit(message)
            else:
                self._held.setdefault(stage, []).append(message)

    def finish(self, stage: int) -> None:
        with self._lock:
            self._done.add(stage)
            while self._pos < len(self._order) and self._order[self._pos] in self._done:
                self._pos += 1
                if self._pos < len(self._order):
                    for message in self._held.pop(self._order[self._pos], []):
                        self._emit(message)

    def flush(self) -> None:
        """Everything still held, in stage order (after a failure)."""
        with self._lock:
            for stage in self._order[self._pos:]:
                for message in self._held.pop(stage, []):
                    self._emit(message)
            self._pos = len(self._order)
