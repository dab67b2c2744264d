"""LLM-judge labels of coordination (prompt v1, output schema ``schemas/judge_output.schema.json``) and of the
MAST failure modes with a Who&When attribution (prompt fm-v1, ``schemas/judge_failure_modes.schema.json``).

The method and its formulas, as the dataset card publishes them: ``coord_bench/card_methods/judge.md``.

Modules: ``client.py`` (one request), ``prompt.py``, ``failure_modes.py``, ``tasks.py`` (what the judge can
be asked), ``cache.py``, ``budget.py``, ``sampling.py``,
``agreement.py``, ``config.py`` (``JudgeConfig``), ``runner.py`` (the concurrent run), ``results.py``
(entries, consensus, agreement with ground truth) and ``mapper.py`` (``JudgeMapper``, the layer).
Labelling a finished build (``coord_bench.label``) and the review sample (``coord_bench.review``) are
commands above this package.
"""

from coord_bench.mappers.judge.config import DEFAULTS, JudgeConfig, JudgeConfigError
from coord_bench.mappers.judge.mapper import JudgeMapper

__all__ = ["DEFAULTS", "JudgeConfig", "JudgeConfigError", "JudgeMapper"]
