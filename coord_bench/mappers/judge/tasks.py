"""What the judge can be asked, one entry per recipe value of ``annotations.judge.tasks``: each task has its
own prompt version, prompt template (whose sha256 is the ``llm:`` provenance of its labels), output schema
and check of a schema-valid reply against its conversation. Both tasks go through the same runner: the same
budget, cache (the key holds the task's prompt version and schema) and sample."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coord_bench.mappers.judge import failure_modes, prompt
from coord_bench.schema import load_schema

COORDINATION = "coordination"
FAILURE_MODES = "failure_modes"


@dataclass(frozen=True)
class JudgeTask:
    name: str
    prompt_version: str
    schema_file: str
    template_sha256: str
    check: Callable[[dict[str, Any], prompt.Prompt], tuple[dict[str, Any] | None, str | None, int]]

    @property
    def schema(self) -> dict[str, Any]:
        return load_schema(self.schema_file)

    @property
    def schema_version(self) -> str:
        return self.schema["x-schema-version"]


TASKS = {
    COORDINATION: JudgeTask(
        COORDINATION, prompt.PROMPT_VERSION, prompt.OUTPUT_SCHEMA_FILE, prompt.TEMPLATE_SHA256, prompt.check_output
    ),
    FAILURE_MODES: JudgeTask(
        FAILURE_MODES,
        failure_modes.PROMPT_VERSION,
        failure_modes.OUTPUT_SCHEMA_FILE,
        failure_modes.TEMPLATE_SHA256,
        failure_modes.check_output,
    ),
}
