"""Collators: a list of examples -> padded tensors for MLM (whole-word / token-budget / span masking) and CLM.

An example is ``{"input_ids": ids, "word_starts": flags}`` (what ``ShardSet`` returns; ``word_starts`` optional,
missing = every token is its own word) or a bare sequence of ids. Every collator returns ``input_ids``,
``attention_mask`` (1 = real token, HF convention), ``token_type_ids`` (zeros) and ``labels`` (-100 where not
predicted), and takes the ``torch.Generator`` at call time: ``collator(examples, generator)``. The loader owns the
generator and checkpoints its state, so a resumed run masks exactly as the uninterrupted one.

Reference: HF ``DataCollatorForWholeWordMask`` returns no attention_mask (huggingface/transformers#12998) and needs
``chinese_ref`` positions computed by a separate script; here word boundaries travel with the tokens.
CLM follows HF ``run_clm.py``: labels = input_ids and the model shifts them; padding (rare: blocks are full) is -100.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from lmforge.data.lm_tokenizer import require_mask_token_id
from lmforge.data.masking import IGNORE_INDEX, apply_masks, per_word, spans, token_budget, word_index

MaskingMode = Literal["word", "token", "span"]
MODES: tuple[str, ...] = ("word", "token", "span")


def _as_example(example: Any) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(example, dict):
        ids = np.asarray(example["input_ids"], dtype=np.int64)
        starts = example.get("word_starts")
        return ids, None if starts is None else np.asarray(starts, dtype=bool)
    return np.asarray(example, dtype=np.int64), None


def _pad(
    examples: Sequence[Any],
    *,
    pad_token_id: int,
    max_length: int | None,
    pad_to_multiple_of: int | None,
    keep_last: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad to the longest example; returns ids, attention mask (bool) and word starts (bool).

    Longer examples are cut to ``max_length``; with ``keep_last`` the final token ([SEP]) survives the cut."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    rows = []
    for example in examples:
        ids, starts = _as_example(example)
        if starts is None:
            starts = np.ones(ids.shape, dtype=bool)
        if starts.shape != ids.shape:
            raise ValueError(f"word_starts has shape {starts.shape} but input_ids has {ids.shape}")
        if max_length is not None and ids.size > max_length:
            keep = np.r_[0 : max_length - 1, ids.size - 1] if keep_last else np.arange(max_length)
            ids, starts = ids[keep], starts[keep]
        rows.append((ids, starts))
    T = max(ids.size for ids, _ in rows)
    if pad_to_multiple_of:
        T = -(-T // pad_to_multiple_of) * pad_to_multiple_of
    B = len(rows)
    input_ids_BT = torch.full((B, T), pad_token_id, dtype=torch.long)
    keep_BT = torch.zeros(B, T, dtype=torch.bool)
    starts_BT = torch.ones(B, T, dtype=torch.bool)
    for b, (ids, starts) in enumerate(rows):
        input_ids_BT[b, : ids.size] = torch.from_numpy(ids)
        keep_BT[b, : ids.size] = True
        starts_BT[b, : ids.size] = torch.from_numpy(starts)
    return input_ids_BT, keep_BT, starts_BT


class MLMCollator:
    """Masked-LM batches with whole-word masking.

    ``mode="word"`` decides per word (GAU-alpha: 15% of words, 80/10/10 per word), ``"token"`` selects whole
    words up to 15% of tokens then decides 80/10/10 per token (HF ``run_mlm_wwm``), ``"span"`` masks SpanBERT
    spans of whole words (tokenizer-free models). Special tokens are never selected.
    """

    def __init__(
        self,
        tokenizer,
        *,
        mlm_probability: float = 0.15,
        mode: str = "word",
        max_seq_length: int = 512,
        pad_to_multiple_of: int | None = None,
        span_geometric_p: float = 0.2,
        max_span_words: int = 10,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown masking mode {mode!r}; choose from {MODES}")
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if max_seq_length < 2:
            raise ValueError(f"max_seq_length must be >= 2, got {max_seq_length}")
        self.mode = mode
        self.mlm_probability = mlm_probability
        self.max_seq_length = max_seq_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.span_geometric_p = span_geometric_p
        self.max_span_words = max_span_words
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.mask_token_id = require_mask_token_id(tokenizer)  # a ValueError for GPT-2 / sentencepiece tokenizers
        self.random_range = tuple(tokenizer.random_token_range)
        self.special_ids = torch.tensor(sorted(tokenizer.all_special_ids), dtype=torch.long)

    def __call__(self, examples: Sequence[Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        input_ids_BT, keep_BT, starts_BT = _pad(
            examples,
            pad_token_id=self.pad_token_id,
            max_length=self.max_seq_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            keep_last=True,
        )
        maskable_BT = keep_BT & ~torch.isin(input_ids_BT, self.special_ids)
        words_BT = word_index(starts_BT, maskable_BT=maskable_BT)
        p = self.mlm_probability
        if self.mode == "word":
            selected_BT, action_BT = per_word(words_BT, probability=p, generator=generator)
        elif self.mode == "token":
            selected_BT, action_BT = token_budget(words_BT, probability=p, generator=generator)
        else:
            selected_BT, action_BT = spans(
                words_BT,
                probability=p,
                generator=generator,
                geometric_p=self.span_geometric_p,
                max_span_words=self.max_span_words,
            )
        inputs_BT, labels_BT = apply_masks(
            input_ids_BT,
            selected_BT=selected_BT,
            action_BT=action_BT,
            mask_token_id=self.mask_token_id,
            random_range=self.random_range,
            generator=generator,
            exclude_ids=self.special_ids.tolist(),
        )
        return {
            "input_ids": inputs_BT,
            "attention_mask": keep_BT.long(),
            "token_type_ids": torch.zeros_like(inputs_BT),
            "labels": labels_BT,
        }


class CLMCollator:
    """Causal-LM batches: labels = input_ids (the model shifts), padding -> -100. Uses no randomness."""

    def __init__(self, tokenizer, *, max_length: int | None = None, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: Sequence[Any], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        input_ids_BT, keep_BT, _ = _pad(
            examples,
            pad_token_id=self.pad_token_id,
            max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            keep_last=False,
        )
        labels_BT = torch.where(keep_BT, input_ids_BT, torch.full_like(input_ids_BT, IGNORE_INDEX))
        return {
            "input_ids": input_ids_BT,
            "attention_mask": keep_BT.long(),
            "token_type_ids": torch.zeros_like(input_ids_BT),
            "labels": labels_BT,
        }
