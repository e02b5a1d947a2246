"""What every fine-tuning task shares: the ``TaskBundle`` a task hands to the engine, pair encoding, collation, and
``predict_logits`` (a task model's logits over features).

A task (``clue.py``, ``qa.py``, ``ner.py``) turns its files into *features* (plain dicts: ``input_ids``,
``token_type_ids`` and its targets) and a ``score`` function from per-feature logits to metrics and predictions;
``finetune.py`` trains ``TaskModel(backbone, bundle.head)`` on them and never looks inside. Features are lists, not
tensors, so a batch is padded to its own longest row (``collate``); ``FeatureLoader`` serves the training batches
(resumable, rank-sharded) to ``train/loop.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lmforge.data.loader import derive_seed
from lmforge.heads.lm import IGNORE_INDEX

__all__ = ["TARGET_KEYS", "FeatureLoader", "TaskBundle", "collate", "encode_pair", "encode_texts", "json_object",
           "predict_logits", "require_cls_sep", "truncate_pair"]  # fmt: skip

TARGET_KEYS = ("labels", "start_positions", "end_positions")


@dataclass
class TaskBundle:
    name: str
    head: nn.Module
    head_config: dict[str, Any]  # rebuilds the head: {"kind": ..., plus the task's fields}, stored in config.json
    features: dict[str, list[dict[str, Any]]]  # "train"/"dev"/"test" -> features
    score: Callable[[str, list[Tensor]], tuple[dict[str, Any], Any]]  # split, logits per feature -> metrics, preds
    write_predictions: Callable[[Any, Path], Path]  # test predictions -> the leaderboard file in a directory
    best_metric: str  # the dev metric that selects the best checkpoint (higher is better)
    report: dict[str, Any] = field(default_factory=dict)  # counts per split, label set, ... (report.json)
    write_dev_extras: Callable[[dict[str, Any], Path], None] | None = None  # e.g. the confusion-matrix PNG


def encode_texts(
    tokenizer: Any, texts: list[str], *, with_offsets: bool = False
) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Per text, its token ids and (``with_offsets``; else ``[]``) each token's characters [start, end) in that
    text, from one ``tokenizer.encode_batch`` call (``data/lm_tokenizer.EncodedBatch``)."""
    if not texts:
        return []
    encoded = tokenizer.encode_batch(texts)
    ids, bounds = encoded.ids.tolist(), encoded.doc_tokens.tolist()
    if with_offsets:
        starts, ends, chars = encoded.starts.tolist(), encoded.ends.tolist(), encoded.doc_chars.tolist()
    out = []
    for d in range(len(texts)):
        a, b = bounds[d], bounds[d + 1]
        offsets = (
            [(s - chars[d], e - chars[d]) for s, e in zip(starts[a:b], ends[a:b], strict=True)] if with_offsets else []
        )
        out.append((ids[a:b], offsets))
    return out


def truncate_pair(a: list[int], b: list[int] | None, budget: int) -> tuple[list[int], list[int] | None]:
    """Longest-first truncation to ``budget`` tokens in all (HF ``truncation="longest_first"``, BERT's
    ``_truncate_seq_pair``): remove from the end of the longer sequence one token at a time, from b on a tie."""
    a = list(a)
    b = None if b is None else list(b)
    while len(a) + (len(b) if b is not None else 0) > budget:
        if b is not None and len(b) >= len(a):
            b.pop()
        else:
            a.pop()
    return a, b


def json_object(line: str, where: str) -> dict:
    """One JSON-lines record; a line that is not JSON or not an object is a ``ValueError`` naming ``where``
    (``file:line``)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def require_cls_sep(tokenizer: Any, task: str) -> None:
    """Token tagging and span QA place [CLS] first (the no-answer position, the tag offset) and [SEP] between the
    parts: a tokenizer with neither [CLS]/BOS nor [SEP]/EOS (an imported sentencepiece model) is a one-line error."""
    missing = [name for name, i in (("[CLS]/BOS", tokenizer.cls_token_id), ("[SEP]/EOS", tokenizer.sep_token_id))
               if i is None]  # fmt: skip
    if missing:
        source = getattr(tokenizer, "source", None) or getattr(tokenizer, "kind", "this")
        raise ValueError(f"{task} needs a {' and a '.join(missing)} token, and the tokenizer ({source}) has none")


def choice_row(pairs: list[tuple[list[int], list[int]]], *, tokenizer: Any, max_length: int, label: int | None) -> dict:
    """One multiple-choice example (C3, CHID): ``encode_pair`` of every (first, second) pair, one per choice, as
    lists of ``input_ids``/``token_type_ids`` (the collator pads choices and tokens), with the label when known."""
    rows = [encode_pair(a, b, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, max_length=max_length)
            for a, b in pairs]  # fmt: skip
    row: dict[str, Any] = {
        "input_ids": [r["input_ids"] for r in rows],
        "token_type_ids": [r["token_type_ids"] for r in rows],
    }
    if label is not None:
        row["labels"] = label
    return row


def encode_pair(
    a: list[int], b: list[int] | None, *, cls_id: int | None, sep_id: int | None, max_length: int
) -> dict[str, list]:
    """``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``, token types 0 then 1, within ``max_length`` tokens. A tokenizer
    without a [CLS] (or BOS) or a [SEP] (or EOS), e.g. an imported sentencepiece model, leaves that token out."""
    head = [] if cls_id is None else [cls_id]
    tail = [] if sep_id is None else [sep_id]
    specials = len(head) + len(tail) * (2 if b is not None else 1)
    if max_length <= specials:
        raise ValueError(f"--max_seq_length {max_length} leaves no room for text")
    a, b = truncate_pair(a, b, max_length - specials)
    ids = [*head, *a, *tail]
    types = [0] * len(ids)
    if b is not None:
        ids += [*b, *tail]
        types += [1] * (len(b) + len(tail))
    return {"input_ids": ids, "token_type_ids": types}


def collate(features: Sequence[dict[str, Any]], *, pad_id: int) -> dict[str, Tensor]:
    """Right-pad a list of features into tensors; list targets (token labels) are padded with -100. Multiple-choice
    features (``input_ids`` a list of choices, each a list of ids) give (B, C, T), C the most choices in the batch;
    a missing choice is all padding (attention mask 0)."""
    if features and features[0]["input_ids"] and isinstance(features[0]["input_ids"][0], list):
        return _collate_choices(features, pad_id=pad_id)
    length = max(len(f["input_ids"]) for f in features)
    batch = len(features)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((batch, length), dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        input_ids[i, :n] = torch.tensor(f["input_ids"])
        token_type_ids[i, :n] = torch.tensor(f.get("token_type_ids", [0] * n))
        attention_mask[i, :n] = 1
    out = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    for key in TARGET_KEYS:
        values = [f.get(key) for f in features]
        if any(v is None for v in values):
            continue
        if isinstance(values[0], list):
            padded = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
            for i, v in enumerate(values):
                padded[i, : len(v)] = torch.tensor(v, dtype=torch.long)
            out[key] = padded
        else:
            out[key] = torch.tensor(values, dtype=torch.float if isinstance(values[0], float) else torch.long)
    return out


def _collate_choices(features: Sequence[dict[str, Any]], *, pad_id: int) -> dict[str, Tensor]:
    choices = max(len(f["input_ids"]) for f in features)
    length = max(len(ids) for f in features for ids in f["input_ids"])
    input_ids = torch.full((len(features), choices, length), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros_like(input_ids)
    attention_mask = torch.zeros_like(input_ids)
    for i, f in enumerate(features):
        for c, ids in enumerate(f["input_ids"]):
            input_ids[i, c, : len(ids)] = torch.tensor(ids)
            token_type_ids[i, c, : len(ids)] = torch.tensor(f["token_type_ids"][c])
            attention_mask[i, c, : len(ids)] = 1
    out = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    if all(f.get("labels") is not None for f in features):
        out["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
    return out


class FeatureLoader:
    """Infinite, resumable iterator of collated training batches over a list of features (``ShardLoader``'s
    pattern, ``data/loader.py``).

    Order: one stream of indices, epoch e contributing ``randperm(N)`` from a generator seeded by (seed, e).
    Step s takes the stream's items ``[s*B*W, (s+1)*B*W)`` and rank r keeps ``[r*B, (r+1)*B)`` of them, so every
    batch is full (a batch may span two epochs, as HF's does not) and every rank runs the same number of steps
    (what DDP needs), however small the task. ``state_dict()`` is the number of batches consumed (plus the sizes
    it was built with); the permutations are recomputed, so a restored loader yields bitwise the same batches.
    """

    def __init__(
        self,
        features: Sequence[dict[str, Any]],
        *,
        batch_size: int,
        pad_id: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not features or batch_size < 1:
            raise ValueError(f"need features and batch_size >= 1, got {len(features)} features, batch {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
        self.features, self.batch_size, self.pad_id = features, batch_size, pad_id
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.batches = 0  # batches of this rank consumed, over all epochs
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:
        """Steps per epoch (the last one spills into the next epoch)."""
        return -(-len(self.features) // (self.batch_size * self.world_size))

    @property
    def epoch(self) -> int:
        return self.batches * self.batch_size * self.world_size // len(self.features)

    def _index(self, position: int) -> int:
        epoch, i = divmod(position, len(self.features))
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "order", epoch))
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}  # a batch spans <= 2 epochs
            self._orders[epoch] = torch.randperm(len(self.features), generator=generator).tolist()
        return self._orders[epoch][i]

    def __iter__(self) -> FeatureLoader:
        return self

    def __next__(self) -> dict[str, Tensor]:
        start = (self.batches * self.world_size + self.rank) * self.batch_size
        self.batches += 1
        return collate(
            [self.features[self._index(p)] for p in range(start, start + self.batch_size)], pad_id=self.pad_id
        )

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "epoch": self.epoch, **self._shape()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in self._shape().items():
            if state.get(key) != value:
                raise ValueError(
                    f"loader state was saved with {key}={state.get(key)!r} but this loader has {key}={value!r}; "
                    "resuming would not reproduce the batches"
                )
        self.batches = int(state["batches"])

    def _shape(self) -> dict[str, int]:
        return {"seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                "batch_size": self.batch_size, "num_features": len(self.features)}  # fmt: skip


def predict_logits(
    model: Any,
    features: list[dict[str, Any]],
    *,
    batch_size: int,
    pad_id: int,
    device: Any,
    autocast_dtype: Any = None,
) -> list:
    """Per-feature logits (fp32 on CPU, without padding rows) of ``model`` in eval mode."""
    model.eval()
    out = []
    autocast = torch.autocast(torch.device(device).type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    with torch.no_grad(), autocast:
        for i in range(0, len(features), batch_size):
            chunk = features[i : i + batch_size]
            batch = collate(chunk, pad_id=pad_id)
            logits = (
                model(
                    batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                    token_type_ids=batch["token_type_ids"].to(device),
                )
                .logits.float()
                .cpu()
            )
            for j, f in enumerate(chunk):
                out.append(logits[j] if logits.dim() == 2 else logits[j, : len(f["input_ids"])])
    return out
