"""``lmforge evaluate length --model RUN --lengths 64,128,256,512,1024``: one model at several evaluation lengths.

For every length L it reports masked-LM accuracy on the masked positions (encoders) or perplexity (decoders), as
``length.json``, a Markdown table ``length.md`` and a plot ``length.png`` in the run directory (or ``--output_dir``),
and prints the table. This is the check behind issue 5's length-generalisation claim: GAU-alpha's ``softmax_plus``
(``log_512(n)`` scaling) should keep its accuracy at lengths other than the training length, where
``relu(q k^T / n)^2`` kernels with the actual n do not (JunnYu/FLASHQuad_pytorch#1; architectures.md §1.1-1.2, §3).

Held-out data: by default the validation split of the data the run was trained on (``train_dir`` in its
``config.yaml``); ``--data`` takes a ``lmforge prepare all`` directory, a shard split directory or a jsonl file
(tokenized with the run's tokenizer and segmented with ``--segmenter`` exactly as ``prepare shards`` does).

How the sequences are built, so that lengths are comparable:

1. the documents are laid end to end in one token stream (at most ``--max_tokens`` tokens): MLM puts [SEP] between
   documents, CLM ends each document with its separator (EOS, else [SEP]) as CLM shards do;
2. MLM only: whole-word masking is decided **once on the whole stream** with the training recipe (the run's
   ``mlm_probability`` and ``wwm_mode``: 15% of words, 80% [MASK] / 10% random / 10% kept per word) from a
   ``torch.Generator`` seeded by ``--seed`` (style R15), so every length predicts exactly the same tokens from the
   same corrupted inputs and only the context around them changes;
3. the stream is cut into consecutive windows of L - 2 tokens, each sent as ``[CLS] window [SEP]`` (MLM), or of L
   tokens (CLM, every token but a window's first is predicted). The last window is shorter; it is padded in its
   batch, which is why padded batches must equal one-by-one evaluation (tested).

Sums are token-weighted (``sum(CE) / predictions``), in float64, over the predicted positions only.
Modules: ``length_data.py`` (the run, held-out data, masking, windows), ``length_report.py`` (table and plot);
this one holds the arguments, the batched evaluation and the stage, and re-exports their names.
This module's top level imports no torch (``lmforge evaluate --help`` stays fast).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.eval.length_data import (
    HeldOut,
    RunInfo,
    _stream,
    build_windows,
    load_heldout,
    load_run,
    mask_stream,
)
from lmforge.eval.length_data import _split_dir as _split_dir  # re-exported: commands and tests import it here
from lmforge.eval.length_report import format_table, plot_length

__all__ = [
    "HeldOut",
    "LengthArgs",
    "RunInfo",
    "build_windows",
    "check_argv",
    "evaluate_length",
    "evaluate_windows",
    "format_table",
    "load_heldout",
    "load_run",
    "mask_stream",
    "plot_length",
]

RESULT_FILES = ("length.json", "length.md", "length.png")


@dataclass(kw_only=True)
class LengthArgs:
    model: str
    """A run directory (its newest checkpoint) or a checkpoint-STEP directory."""
    lengths: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024])
    """Evaluation lengths in tokens, [CLS]/[SEP] included, e.g. 64,128,256,512,1024."""
    data: str | None = None
    """Held-out data: a `prepare all` directory (its validation split), a shard split directory or a jsonl file.
    Default: the validation split of the data the run was trained on."""
    output_dir: str | None = None
    """Where length.json, length.md and length.png go (default: the run directory)."""
    max_tokens: int = 65536
    """Use at most this many held-out tokens (the documents are taken in order)."""
    batch_size: int = 8
    """Sequences per forward pass."""
    seed: int = 1234
    """Seed of the whole-word masking (same seed, same masks, same numbers)."""
    mlm_probability: float | None = None
    """Share of words (or tokens) masked; default: the run's --mlm_probability (0.15)."""
    wwm_mode: str | None = None
    """word (GAU-alpha, per-word decisions) or token (HF run_mlm_wwm budget); default: the run's --wwm_mode."""
    segmenter: str = "rjieba"
    """Word segmentation of a jsonl --data file (prepared shards carry their own word boundaries)."""
    text_field: str = "text"
    """Field holding the text in a jsonl --data file."""
    device: str | None = None
    """cpu or cuda (default: cuda when available)."""
    disable_tqdm: bool = False
    """Disable the progress bar."""


def check_argv(argv: list[str]) -> None:
    """CLI precheck: ``--lengths 64,128,256`` (the issue's spelling) becomes the JSON list jsonargparse parses,
    in place; ``--lengths [64,128]`` passes unchanged."""
    for i, token in enumerate(argv):
        if token.startswith("--lengths="):
            name, value = token.split("=", 1)
            argv[i] = f"{name}={_json_list(value)}"
        elif token == "--lengths" and i + 1 < len(argv):
            argv[i + 1] = _json_list(argv[i + 1])


def _json_list(value: str) -> str:
    parts = [p.strip() for p in value.strip().strip("[]").split(",") if p.strip()]
    if not parts or not all(p.lstrip("-").isdigit() for p in parts):
        raise ValueError(f"--lengths must be integers separated by commas (e.g. 64,128,256), got {value!r}")
    return "[" + ",".join(parts) + "]"


# ----------------------------------------------------------------------------- windows


def evaluate_windows(
    model: Any, windows: list, *, objective: str, batch_size: int, pad_token_id: int, device: Any, progress=None
) -> dict[str, float]:
    """Token-weighted loss, accuracy and perplexity over ``windows``, ``batch_size`` at a time (right-padded)."""
    import torch
    import torch.nn.functional as F

    from lmforge.eval.lm import lm_metrics

    sums = torch.zeros(3, dtype=torch.float64)  # cross-entropy, correct, predicted
    model.eval()
    with torch.no_grad():
        for first in range(0, len(windows), batch_size):
            chunk = windows[first : first + batch_size]
            T = max(ids.numel() for ids, _ in chunk)
            input_ids_BT = torch.full((len(chunk), T), pad_token_id, dtype=torch.long)
            labels_BT = torch.full((len(chunk), T), -100, dtype=torch.long)
            keep_BT = torch.zeros(len(chunk), T, dtype=torch.long)
            for b, (ids, labels) in enumerate(chunk):
                input_ids_BT[b, : ids.numel()], labels_BT[b, : ids.numel()], keep_BT[b, : ids.numel()] = ids, labels, 1
            logits_BTV = model(
                input_ids_BT.to(device),
                attention_mask=keep_BT.to(device),
                token_type_ids=torch.zeros_like(input_ids_BT).to(device),
            ).logits
            if objective == "clm":  # logits at t predict the token at t + 1
                logits_BTV, labels_BT = logits_BTV[:, :-1], labels_BT[:, 1:]
            counted_BT = labels_BT != -100
            logits_NV = logits_BTV[counted_BT.to(logits_BTV.device)].double()
            targets_N = labels_BT[counted_BT].to(logits_NV.device)
            loss = F.cross_entropy(logits_NV, targets_N, reduction="sum")
            correct = (logits_NV.argmax(-1) == targets_N).sum()
            sums += torch.stack([loss.cpu(), correct.cpu().double(), torch.tensor(float(targets_N.numel()))])
            if progress is not None:
                progress.update(int(keep_BT.sum()))
    return lm_metrics(*sums.tolist())


# ----------------------------------------------------------------------------- the stage


def _check_args(args: LengthArgs) -> list[int]:
    if not args.lengths:
        raise ValueError("--lengths is empty; pass e.g. --lengths 64,128,256,512,1024")
    lengths = sorted(set(int(n) for n in args.lengths))
    if lengths[0] < 3:
        raise ValueError(f"every length must be >= 3 ([CLS] + a token + [SEP]), got {lengths[0]}")
    for name in ("max_tokens", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    return lengths


def evaluate_length(args: LengthArgs) -> dict[str, Any]:
    """CLI entry point: evaluate, print the table, write length.json/.md/.png; returns what length.json holds."""
    lengths = _check_args(args)
    run = load_run(args.model)

    import torch
    from tqdm.auto import tqdm

    config = run.config
    limit = config.get("max_position_embeddings")
    # only learned absolute positions have a hard limit (GAU-alpha/FLASH record max_position_embeddings for export
    # but use RoPE / sinusoids computed for any length)
    if limit is not None and config.get("position_embedding_type") == "absolute" and lengths[-1] > limit:
        raise ValueError(
            f"{run.architecture} uses learned absolute positions: at most {limit} tokens, but --lengths asks for "
            f"{lengths[-1]}"
        )
    tokenizer = run.loaded.tokenizer
    heldout = load_heldout(
        args.data, run, tokenizer, max_tokens=args.max_tokens, segmenter=args.segmenter, text_field=args.text_field
    )
    mlm = run.objective == "mlm"
    separator = tokenizer.sep_token_id if mlm else tokenizer.document_separator_id
    ids_N, starts_N = _stream(heldout, separator, max_tokens=args.max_tokens, trailing=not mlm)
    needed = lengths[-1] - 2 if mlm else lengths[-1]
    if ids_N.size < needed:
        raise ValueError(
            f"only {ids_N.size} held-out tokens in {heldout.source}: length {lengths[-1]} needs at least {needed}; "
            "pass more --data or shorter --lengths"
        )
    if mlm:
        probability = args.mlm_probability
        if probability is None:
            probability = run.train_config.get("mlm_probability", 0.15)
        mode = args.wwm_mode if args.wwm_mode is not None else run.train_config.get("wwm_mode", "word")
        inputs_N, labels_N = mask_stream(ids_N, starts_N, tokenizer, probability=probability, mode=mode, seed=args.seed)
    else:
        probability, mode = None, None
        inputs_N = labels_N = torch.as_tensor(ids_N, dtype=torch.long)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = run.loaded.model.to(device)
    per_length = {
        n: build_windows(
            inputs_N, labels_N, length=n, objective=run.objective, cls_id=tokenizer.cls_token_id, sep_id=separator
        )
        for n in lengths
    }
    rows = []
    total = sum(ids.numel() for windows in per_length.values() for ids, _ in windows)
    progress = tqdm(total=total, desc="evaluate length", unit="tok", unit_scale=True, disable=args.disable_tqdm)
    for n, windows in per_length.items():
        started = time.perf_counter()
        metrics = evaluate_windows(
            model,
            windows,
            objective=run.objective,
            batch_size=args.batch_size,
            pad_token_id=tokenizer.pad_token_id,
            device=device,
            progress=progress,
        )
        rows.append({"length": n, "sequences": len(windows), **metrics, "seconds": time.perf_counter() - started})
    progress.close()

    result = {
        "model": str(args.model),
        "checkpoint": str(run.checkpoint),
        "architecture": run.architecture,
        "objective": run.objective,
        "config": config,
        "training_length": run.training_length,
        "data": heldout.source,
        "documents": len(heldout.documents),
        "tokens": int(ids_N.size),
        "seed": args.seed,
        "mlm_probability": probability,
        "wwm_mode": mode,
        "batch_size": args.batch_size,
        "device": str(device),
        "argv": sys.argv,
        "results": rows,
    }
    out = Path(args.output_dir) if args.output_dir is not None else run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "length.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table = format_table(result)
    what = "masked-token accuracy" if mlm else "perplexity"
    heading = (
        f"# Length evaluation: {run.architecture} ({what})\n\n"
        f"Checkpoint `{run.checkpoint}`, trained at length {run.training_length}; held-out data `{heldout.source}` "
        f"({result['tokens']} tokens, {result['documents']} documents"
        + (f", whole-word masking {mode} p={probability} seed {args.seed}" if mlm else "")
        + ").\n\n"
    )
    (out / "length.md").write_text(heading + table + "\n\n![length](length.png)\n", encoding="utf-8")
    plot_length({run.architecture: result}, out / "length.png", training_length=run.training_length)
    print(table)
    print(f"-> {out / 'length.json'}, {out / 'length.md'}, {out / 'length.png'}", flush=True)
    return result
