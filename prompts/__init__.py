"""Pure language rules, message templates, the planner and recording scripts.

No I/O, no clock, no database: values and the reference date come in, a Plan comes out.
Modules: ``text`` (what a word is), ``numbers``/``clock``/``phone`` (values to words),
``template`` (slots to words), ``models`` (the Plan and the clip index), ``planner`` (words to a
Plan), ``script`` (what to record). Nothing here imports ``voicebank`` or ``server``.
"""
