"""Every field failure of one record, collected so that its one reject lists them all.

A user fixing a recipe should see every wrong path of a record in one build, not one per round. The adapter
reads each field through ``read``, which notes a failure and goes on with a stand-in value; ``reject`` then
makes the record's single reject. A path failing in every message is one failure with a count, not 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from coord_bench.sources.base import Reject

T = TypeVar("T")
SHOWN = 10  # failures quoted in the joined reason; the list keeps every distinct one


def _pattern(reject: Reject) -> tuple[str, str]:
    """The same failure in another message: the field with its list positions as ``*`` (``messages.*.from``)."""
    return reject.kind, re.sub(r"(?<=\.)-?\d+(?=\.|$)", "*", reject.field or "")


class FieldFailures:
    def __init__(self) -> None:
        self.found: dict[tuple[str, str], tuple[Reject, int]] = {}

    def read(self, lookup: Callable[..., T], *args: Any, stand_in: Any = None) -> T:
        """``lookup(*args)``, or ``stand_in`` when it rejects (the failure is kept for the record's reject)."""
        try:
            return lookup(*args)
        except Reject as failure:
            self.add(failure)
            return stand_in

    def add(self, failure: Reject) -> None:
        key = _pattern(failure)
        first, count = self.found.get(key, (failure, 0))
        self.found[key] = (first, count + 1)

    def reject(self) -> Reject | None:
        """The record's one reject (field and kind of the first failure), or None when nothing failed."""
        if not self.found:
            return None
        failures = [
            {"field": first.field, "kind": first.kind, "reason": first.reason, "count": count}
            for first, count in self.found.values()
        ]
        shown = [f["reason"] + (f" (the same in {f['count'] - 1} more)" if f["count"] > 1 else "") for f in failures]
        more = len(failures) - SHOWN
        reason = "; ".join(shown[:SHOWN]) + (f"; and {more} more failures (see 'failures')" if more > 0 else "")
        if len(failures) > 1:
            reason = f"{len(failures)} field failures: {reason}"
        first = failures[0]
        return Reject(reason, field=first["field"], kind=first["kind"], failures=failures)
