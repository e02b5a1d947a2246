"""``lmforge evaluate lm --model RUN``: held-out masked-LM accuracy / loss / perplexity (or CLM perplexity) of a run.

Causal models also continue a few held-out prompts and report how degenerate the continuations are
(``lmforge.eval.degeneration``: distinct-1/2, longest repeated span, share of blank outputs): perplexity alone does
not show a model that writes newlines or loops. For masked LMs, ``lmforge evaluate probe`` is the readable check.

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
    num_generation_samples: int = 8
    """CLM: held-out prompts (the first tokens of the first sequences) to continue for the degeneration measures
    (distinct-1/2, longest repeated span, blank outputs); 0: none."""
    generation_max_new_tokens: int = 32
    """CLM: tokens generated per prompt."""
    generation_prompt_length: int = 16
    """CLM: tokens of each held-out sequence used as its prompt."""
    generation_do_sample: bool = True
    """CLM: sample (top-k 50, seeded by --seed, as during training) or, false, greedy decoding."""


def evaluate_lm_run(args: LMEvalArgs) -> dict[str, Any]:
    """CLI entry point: evaluate, print and write ``eval_results.json``; returns the metrics."""
    from lmforge.eval.length import _split_dir, load_run

    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.num_generation_samples < 0 or args.generation_max_new_tokens < 1 or args.generation_prompt_length < 1:
        raise ValueError(
            "need --num_generation_samples >= 0, --generation_max_new_tokens >= 1, --generation_prompt_length >= 1"
        )
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
    if run.objective == "clm" and args.num_generation_samples:
        from lmforge.eval.degeneration import continuation_quality, format_degeneration

        count = min(args.num_generation_samples, len(shards))
        prompts = [shards[i]["input_ids"][: args.generation_prompt_length].tolist() for i in range(count)]
        _, quality = continuation_quality(
            model, prompts, decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
            max_new_tokens=args.generation_max_new_tokens, generator=torch.Generator(device).manual_seed(args.seed),
            eos_token_id=tokenizer.document_separator_id, pad_token_id=tokenizer.pad_token_id or 0,
            do_sample=args.generation_do_sample, device=device,
        )  # fmt: skip
        decoding = "sampled (top-k 50)" if args.generation_do_sample else "greedy"
        print(f"continuations ({decoding}, {args.generation_max_new_tokens} tokens): {format_degeneration(quality)}")
        metrics |= {f"eval_{k}": v for k, v in quality.items() if k != "samples"}
        metrics["eval_generation"] = {"decoding": decoding, "samples": quality["samples"],
                                      "max_new_tokens": args.generation_max_new_tokens}  # fmt: skip
    result = {"checkpoint": str(run.checkpoint), "data": str(split), "seed": args.seed, **metrics}
    out = Path(args.output_dir) if args.output_dir is not None else run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_results.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for key, value in metrics.items():
        print(f"{key:24s} {value:.4f}" if isinstance(value, float) else f"{key:24s} {value}")
    return result
