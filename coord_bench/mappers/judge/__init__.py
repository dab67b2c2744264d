"""LLM-judge labels of coordination (prompt v1, output schema ``schemas/judge_output.schema.json``).

Method. An LLM behind an OpenAI-compatible chat-completions API (OpenRouter by default) rates each
conversation of a seeded sample: ``success_score`` 0-10, ``agreement_level`` (full / partial / none),
``efficiency_score`` 0-10, turn events, ``preferred`` (pairwise only: A, B or tie) and a short rationale.
The conversation is shown between delimiter lines with a random marker and declared untrusted data; DEBATE
references are never shown. Long conversations are cut to a token budget (every message to one common
length; middle turns dropped last). Structured output: strict ``json_schema`` (OpenAI, OpenRouter with
``require_parameters``), ``json_object`` + schema (llama.cpp), a forced tool call, or the prompt alone; every
reply is validated against the output schema and re-asked a bounded number of times; out-of-range turn
indexes are dropped.

Sample. The budget is far smaller than the corpus: rows are stratified by source, then by config and native
outcome (arena winner, DEBATE correctness or decision), one row per group first and the rest in proportion
(largest remainders), the smallest sha256(seed:id) within a stratum. Rows outside the sample have status
``not_sampled``; sampled rows the budget could not reach ``over_budget``; ``failed`` rows carry the reason.
``consensus.sample_weight`` = stratum population / stratum sample size.

Budget. ``max_calls`` and ``max_cost_usd`` are hard caps over every request (retries and re-asks included):
each request reserves one call and an upper-bound cost (cl100k_base tokens + 25%, completion priced at
``max_tokens``) before it is sent and settles the actual cost after (OpenRouter's ``usage.cost``, else the
priced usage). The caps belong to the build folder: a ledger on disk (``judge_budget.sqlite`` beside the cache,
keyed by the folder and the models) records each request before it is sent and settles it after, so a
rerun, a run after a crash (whose unsettled requests count as spent) or a second process spends only what is
left; raising the caps needs ``--raise-budget``. Every validated answer is cached (SQLite, keyed by sha256 of
model, prompt version, output schema, messages and parameters), so reruns pay nothing for what is done.

Consensus and agreement. Per row: the median ``success_score`` and ``efficiency_score`` of the judges, the
majority ``agreement_level`` (ties: the lower level) and ``preferred`` (ties: tie); ``success`` = median score
>= ``success_threshold`` (5). Between judges: Cohen's kappa per pair, ``(p_o - p_e) / (1 - p_e)``, and
Krippendorff's alpha over all, ``1 - D_o / D_e`` (nominal for classes, interval for scores). Against ground
truth: accuracy and kappa of the judges' success vs a decisive arena vote and vs DEBATE ``answer_correct``,
and of ``preferred`` vs the arena winner. With ``both_orders`` a pairwise conversation is judged with A and B
swapped too; a verdict that changes with the order becomes a tie, and the consistency rate is reported.

Modules: ``client.py`` (one request), ``prompt.py``, ``cache.py``, ``budget.py``, ``sampling.py``,
``agreement.py``, ``config.py`` (``JudgeConfig``), ``runner.py`` (the concurrent run), ``results.py``
(entries, consensus, agreement with ground truth) and ``mapper.py`` (``JudgeMapper``, the layer).
Labelling a finished build (``coord_bench.label``) and the review sample (``coord_bench.review``) are
commands above this package.
"""

from coord_bench.mappers.judge.config import DEFAULTS, JudgeConfig, JudgeConfigError
from coord_bench.mappers.judge.mapper import JudgeMapper

__all__ = ["DEFAULTS", "JudgeConfig", "JudgeConfigError", "JudgeMapper"]
