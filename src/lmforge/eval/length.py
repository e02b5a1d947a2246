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
This module's top level imports no torch (``lmforge evaluate --help`` stays fast).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# ----------------------------------------------------------------------------- the run


@dataclass
class RunInfo:
    checkpoint: Path
    run_dir: Path
    """The run directory holding the checkpoint (or the checkpoint itself when it is not inside a run)."""
    architecture: str
    objective: str
    config: dict[str, Any]
    train_config: dict[str, Any]
    """The run's config.yaml (empty when there is none)."""
    training_length: int | None


def load_run(model: str) -> RunInfo:
    """Find the checkpoint and the run's recorded training arguments (``ValueError`` if there is no checkpoint)."""
    import yaml

    from lmforge.train.checkpoint import TOKENIZER_DIR, load_model_info, resolve_checkpoint

    checkpoint = resolve_checkpoint(model)
    info = load_model_info(checkpoint)
    if info["task"] not in ("mlm", "clm"):
        raise ValueError(f"{checkpoint} is a {info['task']!r} model; evaluate length needs an mlm or clm model")
    if not (checkpoint / TOKENIZER_DIR).is_dir():
        raise ValueError(f"{checkpoint} has no {TOKENIZER_DIR}/ directory")
    run_dir = checkpoint.parent if (checkpoint.parent / "config.yaml").is_file() else checkpoint
    train_config: dict[str, Any] = {}
    if (run_dir / "config.yaml").is_file():
        train_config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    training_length = train_config.get("max_seq_length")
    train_shards = _split_dir(train_config.get("train_dir"), "train")
    if training_length is not None and train_shards is not None:  # pretrain uses min(flag, what the shards hold)
        index = json.loads((train_shards / "index.json").read_text(encoding="utf-8"))
        held = index.get("max_seq_length") or index.get("block_size")
        training_length = min(training_length, held) if held else training_length
    return RunInfo(
        checkpoint=checkpoint,
        run_dir=run_dir,
        architecture=info["model"],
        objective=info["task"],
        config=info["config"],
        train_config=train_config,
        training_length=training_length,
    )


def _split_dir(path: str | Path | None, split: str, *, explicit: bool = False) -> Path | None:
    """The ``split`` shard directory of a prepared directory (``shards/split``), a shards directory (``split``)
    or a split directory's sibling. ``explicit``: ``path`` itself may be any split directory (the user named it);
    otherwise it counts only when it is named ``split`` (a run trained on ``D/shards/train`` must not be
    evaluated on its own training split)."""
    if path is None:
        return None
    path = Path(path)
    candidates = [path / "shards" / split, path / split]
    candidates += [path] if explicit or path.name == split else [path.parent / split]
    return next((c for c in candidates if (c / "index.json").is_file()), None)


# ----------------------------------------------------------------------------- held-out data


@dataclass
class HeldOut:
    """Held-out documents as token ids and word-start flags, in order (``flags[0]`` of a document is True)."""

    source: str
    documents: list[tuple[Any, Any]]  # (ids int64 array, word-start bool array) per document

    @property
    def num_tokens(self) -> int:
        return sum(len(ids) for ids, _ in self.documents)


def load_heldout(
    data: str | None,
    run: RunInfo,
    tokenizer: Any,
    *,
    max_tokens: int,
    segmenter: str = "rjieba",
    text_field: str = "text",
) -> HeldOut:
    """Documents of ``data`` (or the run's validation split), at most about ``max_tokens`` tokens."""
    import numpy as np

    from lmforge.data.shards import check_fingerprint, open_shards

    if data is None:
        source = run.train_config.get("train_dir")
        split = _split_dir(source, "validation")
        if split is None:
            raise ValueError(
                f"{run.run_dir} records no validation split to evaluate on (train_dir={source!r}); pass --data "
                "(a prepared directory, a shard split directory or a jsonl file)"
            )
    else:
        path = Path(data)
        if not path.exists():
            raise ValueError(f"--data {data!r} does not exist")
        if path.is_file():
            return _jsonl_documents(path, tokenizer, max_tokens=max_tokens, segmenter=segmenter, field=text_field)
        split = _split_dir(path, "validation", explicit=True)
        if split is None:
            raise ValueError(
                f"--data {data!r} holds no shards (no index.json in it, in validation/ or in shards/validation/)"
            )
    shards = open_shards(split)
    check_fingerprint(shards, tokenizer)
    documents, total = [], 0
    for d in range(shards.num_documents):
        if total >= max_tokens:
            break
        start, end = shards.document_span(d)
        if end > start:
            ids, flags = shards.tokens(start, end), shards.word_starts(start, end)
            flags[0] = True
            documents.append((ids.astype(np.int64), flags))
            total += end - start
    return HeldOut(source=str(split), documents=documents)


def _jsonl_documents(path: Path, tokenizer: Any, *, max_tokens: int, segmenter: str, field: str) -> HeldOut:
    """Tokenize + segment a jsonl file as ``prepare shards`` does (``_encode_range``)."""
    import numpy as np

    from lmforge.data.segment import resolve_segmenter, token_word_starts, word_starts

    segmenter = resolve_segmenter(segmenter)
    texts, chars = [], 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not JSON: {error}") from None
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"{path}:{number} has no string {field!r} field")
            if text.strip():
                texts.append(text)
                chars += len(text)
            if chars >= 4 * max_tokens:  # enough for any tokenizer (>= 1 token per 4 characters); trimmed below
                break
    if not texts:
        raise ValueError(f"{path} holds no documents with a {field!r} field")
    encoded = tokenizer.encode_batch(texts)
    flags = token_word_starts(word_starts(texts, segmenter=segmenter), starts=encoded.starts, ends=encoded.ends)
    documents, total = [], 0
    for d in range(len(texts)):
        start, end = int(encoded.doc_tokens[d]), int(encoded.doc_tokens[d + 1])
        if total >= max_tokens:
            break
        if end > start:
            doc_flags = flags[start:end].copy()
            doc_flags[0] = True
            documents.append((encoded.ids[start:end].astype(np.int64), doc_flags))
            total += end - start
    return HeldOut(source=str(path), documents=documents)


# ----------------------------------------------------------------------------- sequences


def _stream(heldout: HeldOut, separator_id: int, *, max_tokens: int, trailing: bool):
    """(ids, word starts) of the documents end to end with ``separator_id`` between them (and after the last one
    when ``trailing``), cut to ``max_tokens``."""
    import numpy as np

    ids, flags = [], []
    for i, (doc_ids, doc_flags) in enumerate(heldout.documents):
        ids.append(doc_ids)
        flags.append(doc_flags)
        if trailing or i + 1 < len(heldout.documents):
            ids.append(np.array([separator_id], dtype=np.int64))
            flags.append(np.array([True]))
    if not ids:
        raise ValueError(f"no held-out tokens in {heldout.source}")
    return np.concatenate(ids)[:max_tokens], np.concatenate(flags)[:max_tokens]


def mask_stream(
    ids_N: Any, word_starts_N: Any, tokenizer: Any, *, probability: float, mode: str, seed: int
) -> tuple[Any, Any]:
    """Whole-word masking of the whole stream at once, with the training collator's functions and a seeded
    generator: returns ``(inputs_N, labels_N)`` (labels -100 where nothing is predicted)."""
    import torch

    from lmforge.data.masking import apply_masks, per_word, token_budget, word_index

    if mode not in ("word", "token"):
        raise ValueError(f"--wwm_mode must be 'word' or 'token', got {mode!r}")
    if not 0.0 < probability < 1.0:
        raise ValueError(f"--mlm_probability must be in (0, 1), got {probability}")
    generator = torch.Generator().manual_seed(seed)
    ids_1N = torch.as_tensor(ids_N, dtype=torch.long)[None]
    starts_1N = torch.as_tensor(word_starts_N, dtype=torch.bool)[None]
    special = torch.tensor(sorted(tokenizer.all_special_ids), dtype=torch.long)
    words_1N = word_index(starts_1N, maskable_BT=~torch.isin(ids_1N, special))
    select = per_word if mode == "word" else token_budget
    selected_1N, action_1N = select(words_1N, probability=probability, generator=generator)
    inputs_1N, labels_1N = apply_masks(
        ids_1N,
        selected_BT=selected_1N,
        action_BT=action_1N,
        mask_token_id=tokenizer.mask_token_id,
        random_range=tuple(tokenizer.random_token_range),
        generator=generator,
    )
    return inputs_1N[0], labels_1N[0]


def build_windows(inputs_N: Any, labels_N: Any, *, length: int, objective: str, cls_id: int, sep_id: int):
    """Consecutive windows of the stream as ``(input_ids, labels)`` pairs of 1-D tensors (the last one shorter)."""
    import torch

    ignore = torch.tensor([-100])
    width = length - 2 if objective == "mlm" else length
    windows = []
    for start in range(0, inputs_N.numel(), width):
        ids, labels = inputs_N[start : start + width], labels_N[start : start + width]
        if objective == "mlm":
            ids = torch.cat([torch.tensor([cls_id]), ids, torch.tensor([sep_id])])
            labels = torch.cat([ignore, labels, ignore])
        if objective == "clm" and ids.numel() < 2:
            continue  # a single token predicts nothing
        windows.append((ids, labels))
    return windows


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


# ----------------------------------------------------------------------------- output


def format_table(result: dict[str, Any]) -> str:
    """The Markdown table of ``length.json``'s results (one row per length)."""
    train_row = next((r for r in result["results"] if r["length"] == result.get("training_length")), None)
    mlm = result["objective"] == "mlm"
    header = "| length | sequences | predictions | accuracy | loss | perplexity |"
    rule = "|---:|---:|---:|---:|---:|---:|"
    if train_row is not None:
        header += " accuracy vs training length |" if mlm else " perplexity vs training length |"
        rule += "---:|"
    lines = [header, rule]
    for row in result["results"]:
        mark = " (train)" if row["length"] == result.get("training_length") else ""
        line = (
            f"| {row['length']}{mark} | {row['sequences']} | {row['predictions']} | {100 * row['accuracy']:.2f}% "
            f"| {row['loss']:.4f} | {row['perplexity']:.2f} |"
        )
        if train_row is not None:
            if mlm:
                line += f" {100 * (row['accuracy'] - train_row['accuracy']):+.2f} pts |"
            else:
                line += f" {row['perplexity'] / train_row['perplexity']:.3f}x |"
        lines.append(line)
    return "\n".join(lines)


def plot_length(results: dict[str, dict[str, Any]], out: Path, *, training_length: int | None = None) -> Path:
    """Accuracy (MLM) or perplexity (CLM) against evaluation length, one line per entry of ``results``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    objective = next(iter(results.values()))["objective"]
    for name, result in results.items():
        lengths = [r["length"] for r in result["results"]]
        values = [100 * r["accuracy"] if objective == "mlm" else r["perplexity"] for r in result["results"]]
        ax.plot(lengths, values, "o-", label=name)
    if training_length is not None:
        label = f"training length {training_length}"
        ax.axvline(training_length, color="grey", linestyle="--", linewidth=1, label=label)
    ax.set_xscale("log", base=2)
    all_lengths = sorted({r["length"] for result in results.values() for r in result["results"]})
    ax.set_xticks(all_lengths, [str(n) for n in all_lengths])
    ax.set_xlabel("evaluation length (tokens)")
    ax.set_ylabel("masked-token accuracy (%)" if objective == "mlm" else "perplexity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


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

    from lmforge.data.tokenizer import load_tokenizer
    from lmforge.train.checkpoint import TOKENIZER_DIR, load_model

    config = run.config
    limit = config.get("max_position_embeddings")
    # only learned absolute positions have a hard limit (GAU-alpha/FLASH record max_position_embeddings for export
    # but use RoPE / sinusoids computed for any length)
    if limit is not None and config.get("position_embedding_type") == "absolute" and lengths[-1] > limit:
        raise ValueError(
            f"{run.architecture} uses learned absolute positions: at most {limit} tokens, but --lengths asks for "
            f"{lengths[-1]}"
        )
    tokenizer = load_tokenizer(run.checkpoint / TOKENIZER_DIR)
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
    model = load_model(run.checkpoint, device=device)
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
