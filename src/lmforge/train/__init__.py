"""The training engine behind ``lmforge pretrain`` and ``lmforge finetune`` (task heads and SFT).

``arguments`` (``TrainingArguments``, the options every training command shares; no torch import), ``config``
(``PretrainArgs``), ``recipes`` (named option sets), ``job`` (the one job builder: run directory, resume, model
placement, optimizer, schedule, precision), ``pretrain`` (data and model of ``lmforge pretrain``), ``loop`` (the
loop), ``optim`` (parameter groups, LAMB, schedules), ``checkpoint`` (atomic checkpoints, ``load_model``),
``distributed`` (DDP/FSDP2), ``metrics`` (metrics.jsonl, TensorBoard, loss.png, env.json). See docs/training.md.
"""
