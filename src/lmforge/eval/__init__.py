"""lmforge.eval: held-out evaluation and inference entry points.

- ``lm``: ``evaluate_lm`` (token-weighted MLM accuracy / loss / perplexity, used by the training loop) and ``sample``;
- ``length``: ``lmforge evaluate length`` (accuracy or perplexity per evaluation length, table + plot);
- ``fill_mask``: ``lmforge fill-mask``.

The command glue of ``lmforge evaluate lm|clue|tydi`` and ``lmforge generate`` is in ``lmforge.commands``.

Modules are imported on demand (the CLI's ``--help`` stays fast).
"""
