"""The training engine behind ``lmforge pretrain``.

``config`` (``PretrainArgs``, no torch import), ``pretrain`` (build the job, run it), ``loop`` (the loop),
``optim`` (parameter groups, LAMB, schedules), ``checkpoint`` (atomic checkpoints, ``load_model``),
``distributed`` (DDP/FSDP2), ``metrics`` (metrics.jsonl, TensorBoard, loss.png, env.json). See docs/training.md.
"""
