"""Masking collators: whole-word statistics within binomial bounds, no partial words, no masked specials,
determinism from the generator, CLM labels; hypothesis fuzzing over arbitrary ids and word boundaries."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.data.collate import CLMCollator, MLMCollator
from lmforge.data.masking import IGNORE_INDEX
from lmforge.data.shards import open_shards

# a tokenizer-like object: pad 0, unk 1, cls 2, sep 3, mask 4, ordinary ids 5..99
TOKENIZER = SimpleNamespace(
    pad_token_id=0, mask_token_id=4, all_special_ids=frozenset(range(5)), random_token_range=(5, 100)
)
SPECIALS = torch.tensor(sorted(TOKENIZER.all_special_ids))


def synthetic_examples(rng: np.random.Generator, count: int, max_words: int = 40):
    """[CLS] words [SEP] with words of 1-4 tokens; word_starts marks word heads (and the specials)."""
    examples = []
    for _ in range(count):
        lengths = rng.integers(1, 5, size=rng.integers(1, max_words))
        ids = [2]
        starts = [True]
        for length in lengths:
            ids += rng.integers(5, 100, size=length).tolist()
            starts += [True] + [False] * (length - 1)
        ids.append(3)
        starts.append(True)
        examples.append({"input_ids": np.array(ids), "word_starts": np.array(starts)})
    return examples


def words_of(example) -> list[list[int]]:
    """Token positions of every word (specials excluded) of an unpadded example."""
    words: list[list[int]] = []
    previous_special = True
    for position, (token, start) in enumerate(zip(example["input_ids"], example["word_starts"])):
        special = int(token) in TOKENIZER.all_special_ids
        if not special:
            if start or previous_special:  # the token after a special always starts a word
                words.append([position])
            else:
                words[-1].append(position)
        previous_special = special
    return words


def check_batch_invariants(examples, batch, *, mode: str):
    input_ids, labels, attention = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert input_ids.shape == labels.shape == attention.shape == batch["token_type_ids"].shape
    for b, example in enumerate(examples):
        n = len(example["input_ids"])
        original = torch.as_tensor(example["input_ids"])
        assert attention[b, :n].all() and not attention[b, n:].any()
        assert (labels[b, n:] == IGNORE_INDEX).all() and (input_ids[b, n:] == 0).all()
        selected = labels[b, :n] != IGNORE_INDEX
        assert torch.equal(labels[b, :n][selected], original[selected])  # labels are the original ids
        assert not selected[torch.isin(original, SPECIALS)].any(), "a special token was masked"
        assert torch.equal(input_ids[b, :n][~selected], original[~selected]), "an unselected token changed"
        for word in words_of(example):
            chosen = selected[word]
            assert chosen.all() or not chosen.any(), "a partially masked word"
            if mode != "token" and chosen.all():  # per-word / per-span decision: all [MASK] or none
                is_mask = input_ids[b, word] == TOKENIZER.mask_token_id
                assert is_mask.all() or not is_mask.any()


@pytest.mark.parametrize("mode", ["word", "token", "span"])
def test_invariants_and_determinism(mode):
    examples = synthetic_examples(np.random.default_rng(0), 16)
    collator = MLMCollator(TOKENIZER, mode=mode, max_seq_length=512)
    first = collator(examples, torch.Generator().manual_seed(3))
    check_batch_invariants(examples, first, mode=mode)
    again = collator(examples, torch.Generator().manual_seed(3))
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = collator(examples, torch.Generator().manual_seed(4))
    assert not torch.equal(first["labels"], other["labels"])


def binomial_bound(n: int, p: float, sigmas: float = 5.0) -> float:
    return sigmas * math.sqrt(p * (1 - p) / n)


def test_per_word_statistics():
    """GAU-alpha recipe: 15% of words, then 80/10/10 of the chosen words."""
    examples = synthetic_examples(np.random.default_rng(1), 400)
    batch = MLMCollator(TOKENIZER, mode="word")(examples, torch.Generator().manual_seed(0))
    chosen = mask = kept = 0
    total = 0
    for b, example in enumerate(examples):
        original = torch.as_tensor(example["input_ids"])
        for word in words_of(example):
            total += 1
            if batch["labels"][b, word[0]] == IGNORE_INDEX:
                continue
            chosen += 1
            mask += int(batch["input_ids"][b, word[0]] == TOKENIZER.mask_token_id)
            kept += int(torch.equal(batch["input_ids"][b, word], original[word]))
    assert abs(chosen / total - 0.15) < binomial_bound(total, 0.15)
    assert abs(mask / chosen - 0.8) < binomial_bound(chosen, 0.8)
    # kept words are the 10% "keep" plus the (1/95 per token) chance that random ids equal the originals
    assert abs(kept / chosen - 0.1) < binomial_bound(chosen, 0.1) + 0.01


def test_token_budget_statistics():
    """HF run_mlm_wwm recipe: whole words up to round(15% of tokens); 80/10/10 per token."""
    examples = synthetic_examples(np.random.default_rng(2), 400)
    batch = MLMCollator(TOKENIZER, mode="token")(examples, torch.Generator().manual_seed(0))
    selected_total = mask = 0
    for b, example in enumerate(examples):
        num_tokens = sum(len(w) for w in words_of(example))
        budget = max(1, round(num_tokens * 0.15))
        selected = int((batch["labels"][b] != IGNORE_INDEX).sum())
        assert selected <= budget
        assert selected >= budget - 3 or num_tokens < 8  # greedy fill leaves at most a word's worth unused
        selected_total += selected
        mask += int((batch["input_ids"][b][batch["labels"][b] != IGNORE_INDEX] == TOKENIZER.mask_token_id).sum())
    assert abs(mask / selected_total - 0.8) < binomial_bound(selected_total, 0.8)


def test_span_masking_budget():
    examples = synthetic_examples(np.random.default_rng(3), 200)
    batch = MLMCollator(TOKENIZER, mode="span")(examples, torch.Generator().manual_seed(0))
    selected = (batch["labels"] != IGNORE_INDEX).sum().item()
    tokens = sum(sum(len(w) for w in words_of(e)) for e in examples)
    assert 0.10 < selected / tokens <= 0.15 + 1e-9


def test_statistics_on_prepared_shards(prepared):
    """Whole-word masking on real segmented text: ~15% of the tokens, never a special, never part of a word."""
    shards = open_shards(prepared / "shards" / "train")
    assert shards.tokenizer_info["mask_token_id"] == TOKENIZER.mask_token_id  # char: specials are ids 0..4
    examples = shards.read(range(min(len(shards), 256)))
    batch = MLMCollator(TOKENIZER, mode="word", max_seq_length=32)(examples, torch.Generator().manual_seed(0))
    check_batch_invariants(examples, batch, mode="word")
    words = sum(len(words_of(e)) for e in examples)
    tokens = sum(int(e["input_ids"].size) - 2 for e in examples)
    fraction = (batch["labels"] != IGNORE_INDEX).sum().item() / tokens
    assert words < tokens  # rjieba found multi-character words
    assert abs(fraction - 0.15) < 2 * binomial_bound(words, 0.15)  # words of several tokens: looser than per-word


def test_max_seq_length_truncates_keeping_sep():
    example = {"input_ids": np.array([2, 5, 6, 7, 8, 3]), "word_starts": np.ones(6, dtype=bool)}
    batch = MLMCollator(TOKENIZER, max_seq_length=4)([example], torch.Generator().manual_seed(0))
    assert batch["input_ids"].shape == (1, 4) and batch["labels"][0, -1] == IGNORE_INDEX
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1]]


def test_bare_id_lists_and_padding_multiple():
    batch = MLMCollator(TOKENIZER, pad_to_multiple_of=8)([[2, 5, 6, 3], [2, 7, 3]], torch.Generator().manual_seed(0))
    assert batch["input_ids"].shape == (2, 8) and batch["attention_mask"].sum().item() == 7


def test_clm_collator():
    batch = CLMCollator(TOKENIZER)([{"input_ids": np.array([5, 6, 7])}, {"input_ids": np.array([8, 9])}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, 9, IGNORE_INDEX]]  # unshifted: the model shifts
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown masking mode 'words'"):
        MLMCollator(TOKENIZER, mode="words")
    with pytest.raises(ValueError, match="mlm_probability"):
        MLMCollator(TOKENIZER, mlm_probability=1.5)
    with pytest.raises(ValueError, match="empty"):
        MLMCollator(TOKENIZER)([], torch.Generator())


@st.composite
def fuzzed_examples(draw):
    count = draw(st.integers(1, 4))
    examples = []
    for _ in range(count):
        ids = draw(st.lists(st.integers(0, 99), min_size=1, max_size=24))  # specials anywhere, even inside words
        starts = draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
        examples.append({"input_ids": np.array(ids), "word_starts": np.array(starts)})
    return examples


@settings(max_examples=80, deadline=None)
@given(fuzzed_examples(), st.sampled_from(["word", "token", "span"]), st.integers(0, 2**31), st.floats(0.05, 0.95))
def test_fuzzed_collators(examples, mode, seed, probability):
    collator = MLMCollator(TOKENIZER, mode=mode, mlm_probability=probability, max_seq_length=64)
    batch = collator(examples, torch.Generator().manual_seed(seed))
    check_batch_invariants(examples, batch, mode=mode)
