"""lmforge.eval: held-out evaluation and inference entry points.

- ``lm``: ``evaluate_lm`` (token-weighted MLM accuracy / loss / perplexity, used by the training loop) and ``sample``;
- ``lm_cli``: ``lmforge evaluate lm`` (``evaluate_lm`` on a run's held-out split);
- ``length``: ``lmforge evaluate length`` (accuracy or perplexity per evaluation length, table + plot);
- ``fill_mask``: ``lmforge fill-mask``; ``generate_cli``: ``lmforge generate``.

Modules are imported on demand (the CLI's ``--help`` stays fast).
"""
