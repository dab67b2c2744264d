"""The benchmark tasks, one module each, by name (``coord-bench evaluate`` runs them; see ``base.Task``).

A new task is one module with a ``Task`` subclass, added to ``TASKS``.
"""

from __future__ import annotations

from coord_bench.tasks.arena_pref import ArenaPreference
from coord_bench.tasks.base import Task
from coord_bench.tasks.early_outcome import EarlyOutcome
from coord_bench.tasks.latent_probe import LatentProbe
from coord_bench.tasks.stop_policy import StopPolicy
from coord_bench.tasks.turn_events import TurnEvents

TASKS: dict[str, type[Task]] = {
    ArenaPreference.name: ArenaPreference,
    EarlyOutcome.name: EarlyOutcome,
    LatentProbe.name: LatentProbe,
    StopPolicy.name: StopPolicy,
    TurnEvents.name: TurnEvents,
}
