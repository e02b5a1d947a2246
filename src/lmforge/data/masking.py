"""Masking for masked-LM pretraining: whole words, token budgets and spans, all from an explicit generator.

Three recipes select which positions are predicted (labels != -100); none ever selects a special token or part
of a word (a word = a word-start token and the continuation tokens after it, see ``word_index``):

* ``per_word`` (GAU-alpha / bert4keras ``TrainingDatasetRoBERTa``): every word is chosen independently with
  probability p, and the 80% [MASK] / 10% random / 10% kept decision is made once per word, so all characters of
  a word are treated alike. The number of masked tokens varies from sequence to sequence.
* ``token_budget`` (HF ``DataCollatorForWholeWordMask`` as used by ``run_mlm_wwm.py``): words in random order are
  added while they fit into round(p * number of maskable tokens); then 80/10/10 is decided per token.
* ``spans`` (SpanBERT, Joshi et al. 2020, for tokenizer-free models such as CANINE): span lengths in words from
  Geometric(0.2) clipped at 10, random start word, rejected if they overlap or overflow the budget; 80/10/10 per
  span.

Deviations: HF counts [CLS]/[SEP] into the token budget and may draw special ids as "random" tokens; we count
maskable tokens only and draw random tokens from ``random_range`` minus the special ids. Every random number comes
from the ``torch.Generator`` passed in (style R15), in a fixed order, so a restored generator repeats a batch exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch

IGNORE_INDEX = -100
MASK, RANDOM, KEEP = 0.8, 0.9, 1.0  # cumulative thresholds of the 80/10/10 decision


def word_index(word_starts_BT: torch.Tensor, *, maskable_BT: torch.Tensor) -> torch.Tensor:
    """Word number of every token within its row (0, 1, ...), -1 where the token cannot be masked.

    A maskable token starts a word if its flag says so or the token before it is not maskable (after [CLS]).
    """
    previous_BT = torch.zeros_like(maskable_BT)
    previous_BT[:, 1:] = maskable_BT[:, :-1]
    start_BT = maskable_BT & (word_starts_BT | ~previous_BT)
    index_BT = torch.cumsum(start_BT.long(), dim=1) - 1
    return torch.where(maskable_BT, index_BT, torch.full_like(index_BT, -1))


def per_word(
    words_BT: torch.Tensor, *, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAU-alpha: each word selected with ``probability``; one 80/10/10 draw per word.

    Returns ``selected_BT`` (bool) and ``action_BT`` (uniform in [0, 1) shared by the tokens of a word).
    """
    B, T = words_BT.shape
    choose_BW = torch.rand(B, T, generator=generator)  # one draw per word slot (a row has at most T words)
    action_BW = torch.rand(B, T, generator=generator)
    slot_BT = words_BT.clamp(min=0)
    selected_BT = (words_BT >= 0) & (choose_BW.gather(1, slot_BT) < probability)
    return selected_BT, action_BW.gather(1, slot_BT)


def _budget(num_tokens: int, probability: float) -> int:
    return max(1, round(num_tokens * probability)) if num_tokens else 0


def _word_rows(words_BT: torch.Tensor, probability: float) -> Iterator[tuple[int, torch.Tensor, list[int], int]]:
    """``(b, word ids of row b, tokens per word, token budget)`` for every row that has at least one word."""
    for b in range(words_BT.shape[0]):
        row = words_BT[b]
        num_words = int(row.max()) + 1
        if num_words > 0:
            lengths = torch.bincount(row[row >= 0], minlength=num_words).tolist()
            yield b, row, lengths, _budget(sum(lengths), probability)


def token_budget(
    words_BT: torch.Tensor, *, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """HF ``_whole_word_mask``: whole words in random order until round(p * tokens); 80/10/10 per token."""
    B, T = words_BT.shape
    selected_BT = torch.zeros(B, T, dtype=torch.bool)
    for b, row, lengths, budget in _word_rows(words_BT, probability):
        num_words = len(lengths)
        chosen = []
        covered = 0
        for w in torch.randperm(num_words, generator=generator).tolist():
            if covered >= budget:
                break
            if covered + lengths[w] > budget:
                continue
            chosen.append(w)
            covered += lengths[w]
        selected_BT[b] = torch.isin(row, torch.tensor(chosen, dtype=row.dtype))
    return selected_BT, torch.rand(B, T, generator=generator)


def spans(
    words_BT: torch.Tensor,
    *,
    probability: float,
    generator: torch.Generator,
    geometric_p: float = 0.2,
    max_span_words: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SpanBERT span masking over whole words; one 80/10/10 draw per span."""
    B, T = words_BT.shape
    selected_BT = torch.zeros(B, T, dtype=torch.bool)
    action_BT = torch.zeros(B, T)
    log_q = math.log(1.0 - geometric_p)
    for b, row, lengths, budget in _word_rows(words_BT, probability):
        num_words = len(lengths)
        attempts = 4 * num_words + 16
        length_draws = torch.rand(attempts, generator=generator).tolist()
        start_draws = torch.randint(0, num_words, (attempts,), generator=generator).tolist()
        action_draws = torch.rand(attempts, generator=generator)
        taken = [False] * num_words
        span_of_word = torch.full((num_words,), -1, dtype=torch.long)
        covered = 0
        for attempt, (u, start) in enumerate(zip(length_draws, start_draws)):
            if covered >= budget:
                break
            span_words = min(max_span_words, int(math.log(1.0 - u) / log_q) + 1)  # Geometric(p) on {1, 2, ...}
            stop = min(start + span_words, num_words)
            size = sum(lengths[start:stop])
            if any(taken[start:stop]) or covered + size > budget:
                continue
            taken[start:stop] = [True] * (stop - start)
            span_of_word[start:stop] = attempt
            covered += size
        word_span = span_of_word[row.clamp(min=0)]
        selected_BT[b] = (row >= 0) & (word_span >= 0)
        action_BT[b] = action_draws[word_span.clamp(min=0)]
    return selected_BT, action_BT


def apply_masks(
    input_ids_BT: torch.Tensor,
    *,
    selected_BT: torch.Tensor,
    action_BT: torch.Tensor,
    mask_token_id: int,
    random_range: tuple[int, int],
    generator: torch.Generator,
    exclude_ids: Iterable[int] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels = original ids at selected positions (else -100); inputs get [MASK] (80%), a random id (10%) or
    stay (10%) according to ``action_BT``. Random ids are uniform over ``random_range`` minus ``exclude_ids`` (the
    special ids, which imported tokenizers have anywhere: BERT's [UNK] 100 .. [MASK] 103)."""
    low, high = random_range
    skipped = sorted({int(i) for i in exclude_ids if low <= int(i) < high})
    random_BT = torch.randint(low, high - len(skipped), input_ids_BT.shape, generator=generator)
    for skip in skipped:  # ascending: maps [low, high - k) one to one onto [low, high) minus the skipped ids
        random_BT += (random_BT >= skip).long()
    labels_BT = torch.where(selected_BT, input_ids_BT, torch.full_like(input_ids_BT, IGNORE_INDEX))
    masked_BT = selected_BT & (action_BT < MASK)
    randomised_BT = selected_BT & (action_BT >= MASK) & (action_BT < RANDOM)
    inputs_BT = torch.where(masked_BT, torch.full_like(input_ids_BT, mask_token_id), input_ids_BT)
    inputs_BT = torch.where(randomised_BT, random_BT, inputs_BT)
    return inputs_BT, labels_BT
