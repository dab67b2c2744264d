"""Source adapters, one module per source, and the registry that finds them by name."""

from __future__ import annotations

from coord_bench.sources.base import RawRecord, Reject, SourceAdapter, SourceSpec
from coord_bench.sources.chatbot_arena import ChatbotArena
from coord_bench.sources.debate import Debate
from coord_bench.sources.mapping import Mapping, check_mapping
from coord_bench.sources.multi_character_dialogue import MultiCharacterDialogue

ADAPTERS: dict[str, type[SourceAdapter]] = {
    cls.name: cls for cls in (ChatbotArena, Debate, MultiCharacterDialogue, Mapping)
}
# The adapters of one known source (a Hub repo and an embedded sample); `mapping` is generic and needs options.
BUILTIN_SOURCES: tuple[str, ...] = tuple(name for name, cls in ADAPTERS.items() if cls.hub_repo_id)


class UnknownSourceError(ValueError):
    pass


def adapter_class(name: str) -> type[SourceAdapter]:
    """The adapter registered under ``name``; the error lists the known ones."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise UnknownSourceError(
            f"unknown source adapter {name!r}; known adapters: {', '.join(sorted(ADAPTERS))}"
        ) from None


__all__ = [
    "ADAPTERS",
    "BUILTIN_SOURCES",
    "Mapping",
    "RawRecord",
    "Reject",
    "SourceAdapter",
    "SourceSpec",
    "UnknownSourceError",
    "adapter_class",
    "check_mapping",
]
