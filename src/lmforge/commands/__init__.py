"""lmforge.commands: command-line glue of the stages that only read, evaluate or generate from a run.

Each module is one stage's arguments dataclass and run function, named in ``cli.py``'s ``STAGES``:
``evaluate_lm`` (``lmforge evaluate lm``), ``evaluate_clue`` (``lmforge evaluate clue``), ``evaluate_tydi``
(``lmforge evaluate tydi``) and ``generate`` (``lmforge generate``). They call the library (``eval``, ``tasks``,
``models``, ``generation``); no library package imports this one (lingua's ``apps/`` split), which
``tests/test_cli_hygiene.py`` checks. Modules are imported on demand (the CLI's ``--help`` stays fast).
"""
