"""What ``lmforge evaluate length`` evaluates: the run (checkpoint, training length, recorded arguments), its
held-out documents, and the masked stream cut into windows of each evaluation length.

1. ``load_heldout``: the validation split of the data the run was trained on (``train_dir`` in its ``config.yaml``),
   or ``--data``: a ``lmforge prepare all`` directory, a shard split directory or a jsonl file (tokenized with the
   run's tokenizer and segmented exactly as ``prepare shards`` does);
2. ``_stream``: the documents end to end in one token stream, [SEP] between documents (MLM) or each document
   followed by its separator (CLM, as CLM shards do);
3. ``mask_stream``: whole-word masking decided **once on the whole stream** with the training collator's functions
   and a ``torch.Generator`` (style R15), so every length predicts the same tokens from the same inputs;
4. ``build_windows``: consecutive windows of L - 2 tokens sent as ``[CLS] window [SEP]`` (MLM), or of L tokens (CLM).

Top level imports no torch (``lmforge evaluate --help`` stays fast).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
    loaded: Any = None
    """The ``lmforge.models.loading.LoadedModel`` (model and tokenizer come from it)."""


def load_run(model: str) -> RunInfo:
    """Resolve ``model`` with ``lmforge.models.loading`` (a run, checkpoint, export or HF directory of an MLM/CLM)
    and find the run's recorded training arguments when there is a run around it."""
    import yaml

    from lmforge.models.loading import load_model

    loaded = load_model(model, with_tokenizer=True)
    if loaded.task not in ("mlm", "clm"):
        raise ValueError(f"{model} holds a {loaded.task!r} model; this evaluation needs an mlm or clm model")
    checkpoint = loaded.checkpoint or loaded.path
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
        architecture=loaded.arch,
        objective=loaded.task,
        config=loaded.info["config"],
        train_config=train_config,
        training_length=training_length,
        loaded=loaded,
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

    from lmforge.data.lm_tokenizer import require_mask_token_id
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
        mask_token_id=require_mask_token_id(tokenizer),
        random_range=tuple(tokenizer.random_token_range),
        generator=generator,
        exclude_ids=special.tolist(),
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
