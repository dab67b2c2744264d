"""Your own multi-agent logs, mapped into the unified record by field paths: no code, a ``mapping`` section.

The options come from ``spec.options["mapping"]`` (a recipe source's ``mapping:``). A *field path* is dotted
keys, with list indexes as numbers (``session.id``, ``messages.0.content``, ``-1`` is the last item). A path
may also be a list of paths, tried in order: the first that matches a non-null value wins (``[name, role]``).
A path that matches nothing rejects the record, naming the path, the first missing key and the record; end
it with ``?`` where the field may be absent (its value is then null; quote such a path inside YAML braces:
``{decision_success: "success?"}``). A null on the way (``outcome: null`` for ``outcome.answer``) is a
match with a null value. A dot inside a key is written ``\\.`` (``meta.v1\\.2`` is key ``v1.2`` of ``meta``).
``check_mapping`` refuses invalid options before anything is read (``schemas/recipe.schema.json`` describes
the same options, one property each). A record's field failures are all listed in its one reject.

Layouts:

- ``grouped`` (default): each record is one conversation holding a list of messages (``messages``), or a
  list of turns each holding a list of messages (``turns`` + ``messages`` relative to a turn), or the
  structure names the speakers: per-agent ``histories`` or a round-by-agent ``matrix`` (below).
- ``flat``: each record is ONE message (an event); consecutive events with the same ``conversation_id``
  form a conversation. A file must be ordered by conversation: a conversation whose events are not next to
  each other in its file is rejected (every part of it), with the file and event index where it reappears.
  One conversation must not span files (a second part would be rejected as a duplicate id). Files are read
  twice (the first pass collects conversation ids only); memory holds one conversation and the ids. A bad
  event (unparsable, not an object, no conversation id) is rejected on its own. In rejects.jsonl the raw
  record of a flat conversation is ``{conversation_id, event_indexes, events}``.
- ``format: text`` (grouped): a plain-text log, one conversation per file, or one per part of it starting
  at a line the ``separator`` regex matches (``text_log.py``). ``line`` is a regex for the line that starts
  a message (it must have a named group ``text``); a conversation is read as the record
  ``{messages: [{group: value}], preamble}``, a line the regex does not match continuing the message before
  it (blank lines around a message dropped), lines before the first message forming ``preamble`` (absent
  when there are none). ``messages`` then defaults to ``messages`` and ``speaker``, ``text``,
  ``timestamp``, ``kind``, ``role`` to the group of that name, when the regex has one.

Options (paths under "message" are relative to a message, or to the event in the flat layout; paths under
"conversation" are relative to the conversation record, or, in the flat layout, looked up in its events in
order, the first event where they match a non-null value winning):

=================  ================================================================================
``files``          globs under the source root; default every file type the readers know
                   (``**/*.json``, ``**/*.jsonl``, ``**/*.jsonl.gz``, ``**/*.json.gz``, ``**/*.ndjson``,
                   ``**/*.parquet``; with ``format: text``: ``**/*.log``, ``**/*.txt``)
``format``         ``json`` (default: JSON, JSONL or Parquet by file name) or ``text``
``line``           text: the regex of a line that starts a message (both matched from the line start)
``separator``      text: the regex of a line that starts a conversation (default: one per file)
``records``        path, in each top-level value of a file, to the list of records (``conversations``
                   for ``{"conversations": [...]}``), or to an object whose values are the records (a
                   collection keyed by id: each record is then read as ``{key, value}``, so paths start
                   with ``key`` or ``value``); ``.`` is the top-level value itself; default: each
                   top-level value is a record. With it, a locator's index counts records in the file.
                   Fields beside the list are not kept.
``layout``         ``grouped`` or ``flat``
``conversation_id`` conversation: the conversation id, required for ``flat``. It is the source id and the
                   record id ``<source>:<id>``; without it, 16 hex digits of a content hash
``messages``       grouped, required unless ``histories`` or ``matrix``: the list of messages (relative
                   to a turn when ``turns`` is given)
``histories``      grouped: an object {agent name: [that agent's chat memory]}. A message whose ``role``
                   (required) is ``own_role`` is the agent's own (the key is its speaker); the others are
                   what it received: a copy of another agent's message is that message, said once; the
                   rest (prompts) are said by ``speaker`` (default ``moderator``), copies in several
                   histories once. Merged in the order said: each history's order, then the round
                   (``turn_index``, else how many messages the agent had said), then the agent's place.
                   Turns are the rounds; an own message's visible_message_ids are the messages before it
                   in its history
``matrix``         grouped: a list with one list per agent (``contexts[agent][message]``); its messages of
                   role ``own_role`` (``role`` required) are the agent's answers, the r-th in round r (turn
                   r), the others the prompts it was shown (not kept: an answer after a prompt has the other
                   agents' answers of the round before as visible_message_ids). Speakers: ``speaker:
                   {by_position: [names]}`` (a name per row), else ``agent_0``, ``agent_1``, ...
``own_role``       histories, matrix: the role of an agent's own messages (default ``assistant``)
``descriptions``   conversation: an object {agent id: text}, each agent's description (a name that never
                   spoke is added as an agent)
``duplicate_ids``  ``reject`` (default: a second conversation with an id already built is rejected) or
                   ``number`` (runs logged under one id: the 2nd becomes ``<id>#2``, the 3rd ``<id>#3``, ...,
                   in reading order, all in the split group of ``<id>`` unless ``group_by`` says otherwise;
                   in the flat layout a conversation split across files becomes two)
``turns``          grouped: the list of turns; each becomes one turn of the record
``turn_index``     message: messages with the same value form one turn (ordered by value when every
                   value is a number, else by first appearance); not with ``turns`` or ``matrix``. Without
                   both, each message is its own turn
``speaker``        message, required unless ``histories`` or ``matrix``: who spoke; the agent id and name
                   (text or integer)
``text``           message, required: the message text
``role``           message: the speaker's role, mapped by ``role_map``; a value that is already one of
                   user, assistant, agent, character is kept; anything else (or none) is ``agent``
``role_map``       {source role: user | assistant | agent | character}
``kind``           message: the message kind (default ``message``)
``model``          message: the model behind the speaker (the first non-null one per agent)
``timestamp``      message: Unix seconds (a number, or a number as text) or an ISO-8601 date-time (UTC
                   when it has no zone; Parquet timestamps too), or a text in the value spec's
                   ``time_format`` (strptime), zoneless times being in its ``time_zone`` (UTC, ``+08:00``
                   or a zone name). The earliest is the record's timestamp; latest minus earliest its
                   duration_seconds
``tool_calls``     message: the list of calls it makes (absent or null: none); each becomes a message of
                   kind ``tool_call``, text ``name(arguments)``, after the message's own text (none when
                   that is null or empty)
``tool_call``      {call_id, name, arguments: path in one call}; default OpenAI's ``id?``,
                   ``function.name``, ``function.arguments?``; arguments that are an object become JSON text
``tool_call_id``   message: the call it answers (absent or null: none); it is then kind ``tool_result``,
                   its speaker of role ``tool`` unless ``role`` gives one
``skip``           {message path: value or list of values}: messages matching any are dropped and
                   counted in extras ``skipped_messages`` (e.g. ``{role: [system]}``). Not an error
                   when the path is absent
``task``           {instruction, input, context, setting, language, references: conversation path}
``outcome``        {decision_success, final_answer, answer_correct, winner, judge, setting_after: path};
                   without ``answer_correct``, it is derived from final_answer and task.references
                   (DEBATE's ``answers_match``). winner must be one of the arena's four values
``protocol``       {paradigm, decision_protocol, persona_mode, task_variant, persona_diversity, rounds}
``group_by``       conversation: the split group key; default task.input (normalized), else the
                   conversation id, else the content hash
``interaction``    protocol.interaction (default ``multi_agent_chat``)
``license``        provenance.source_license (default ``unknown — set mapping.license``)
=================  ================================================================================

Value specs: any path option but ``records``, ``messages``, ``histories``, ``matrix``, ``turns``, ``turn_index``
and ``skip`` may be a mapping
instead of a path: exactly one source, ``path`` (as above), ``const`` (a constant for the source), ``join``
(a list of paths whose values are joined with ``sep``, default ``:``) or ``by_position`` (speaker only: the
i-th message's speaker is the (i mod n)-th name); then, in this order, ``regex`` (searched in the value; the
value becomes ``group``, default the group named like the option, else group 1, else the whole match),
``map`` ({found value: value}), ``default`` (when the regex does not match or the map lacks the value;
without it the record is rejected) and ``at_least`` (a number >= it is true, below it false). The
timestamp's spec may add ``time_format`` and ``time_zone`` (see above).

Tool calls (``tool_calls.py``): ``messages[].tool_call`` is ``{call_id, name, arguments}`` on calls and on
results (the name of the call answered, when the conversation made it earlier; arguments null); null else.

Extras: in the grouped layout every field no path maps, with its nesting (a list of messages keeps its
positions, null where a message was fully mapped); in the flat layout only ``unmapped_event_keys``, the
keys seen in events that no path maps. ``skipped_messages`` is added when ``skip`` dropped any.
"""

from __future__ import annotations

from coord_bench.sources.mapping.adapter import Mapping
from coord_bench.sources.mapping.options import FieldPath, MappingOptions, check_mapping, parse_mapping

__all__ = ["FieldPath", "Mapping", "MappingOptions", "check_mapping", "parse_mapping"]
