"""``lmforge evaluate lm --model RUN``: held-out masked-LM accuracy / loss / perplexity (or CLM perplexity) of a run.

The same evaluation the training loop runs at ``--eval_steps`` (``lmforge.eval.lm.evaluate_lm``: token-weighted
over the predicted positions), on a whole held-out split: by default the validation split of the data the run was
trained on, or ``--data`` (a ``prepare all`` directory or a shard split directory). MLM batches are masked by the
training collator with a generator seeded by ``--seed``, so the numbers are reproducible. Writes
``eval_results.json`` into the run directory (or ``--output_dir``) and prints the metrics.

This module's top level imports no torch (``lmforge evaluate --help`` stays fast).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LMEvalArgs", "evaluate_lm_run"]


@dataclass(kw_only=True)
class LMEvalArgs:
    model: str
    """A masked or causal LM: a run (its newest checkpoint), checkpoint-STEP, export or Hugging Face directory."""
    data: str | None = None
    """A `prepare all` directory (its validation split) or a shard split directory; default: the run's
    validation split."""
    output_dir: str | None = None
    """Where eval_results.json goes (default: the run directory)."""
    batch_size: int = 8
    """Sequences per forward pass."""
    max_eval_samples: int | None = None
    """Evaluate on at most this many sequences (default: all of them)."""
    seed: int = 1234
    """Seed of the whole-word masking."""
    device: str | None = None
    """cpu or cuda (default: cuda when available)."""


def evaluate_lm_run(args: LMEvalArgs) -> dict[str, Any]:
    """CLI entry point: evaluate, print and write ``eval_results.json``; returns the metrics."""
    from lmforge.eval.length import _split_dir, load_run

    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.max_eval_samples is not None and args.max_eval_samples < 1:
        raise ValueError(f"--max_eval_samples must be >= 1, got {args.max_eval_samples}")
    run = load_run(args.model)
    source = args.data if args.data is not None else run.train_config.get("train_dir")
    split = _split_dir(source, "validation", explicit=args.data is not None)
    if split is None:
        raise ValueError(
            f"no held-out shards found in {source!r}; pass --data (a prepared directory or a shard split directory)"
        )

    from itertools import islice

    import torch

    from lmforge.data.collate import CLMCollator, MLMCollator
    from lmforge.data.loader import ShardLoader
    from lmforge.data.shards import check_fingerprint, open_shards
    from lmforge.eval.lm import evaluate_lm

    tokenizer = run.loaded.tokenizer
    shards = open_shards(split)
    check_fingerprint(shards, tokenizer)
    if shards.objective != run.objective:
        raise ValueError(f"{split} holds {shards.objective} sequences but {run.checkpoint} is a {run.objective} model")
    length = shards.sequence_length
    if run.objective == "mlm":
        collator = MLMCollator(
            tokenizer,
            mlm_probability=run.train_config.get("mlm_probability", 0.15),
            mode=run.train_config.get("wwm_mode", "word"),
            max_seq_length=length,
        )
    else:
        collator = CLMCollator(tokenizer, max_length=length)
    loader = ShardLoader(
        shards, batch_size=args.batch_size, collator=collator, seed=args.seed, shuffle=False, drop_last=False
    )
    batches = loader.iter_epoch()
    if args.max_eval_samples is not None:
        batches = islice(batches, max(1, args.max_eval_samples // args.batch_size))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = run.loaded.model.to(device)
    metrics = evaluate_lm(model, batches, objective=run.objective, device=device)
    result = {"checkpoint": str(run.checkpoint), "data": str(split), "seed": args.seed, **metrics}
    out = Path(args.output_dir) if args.output_dir is not None else run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_results.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for key, value in metrics.items():
        print(f"{key:18s} {value:.4f}" if isinstance(value, float) else f"{key:18s} {value}")
    return result
