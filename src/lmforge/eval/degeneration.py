"""Degeneration of generated text: is a causal LM repeating itself or printing blank lines?

Perplexity says how well a model predicts held-out text, not whether what it writes is text: an undertrained
model's greedy continuation is often a newline repeated to the end, and a slightly better one loops on a phrase.
Measures over the *generated* tokens only (the prompt excluded):

- ``distinct_n`` (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models"):
  distinct n-grams / all n-grams, pooled over the samples (1.0: nothing repeats; near 0: one token over and over);
- ``longest_repeat``: the longest span of tokens that occurs at least twice in one sample (occurrences may overlap,
  so ``a a a a`` repeats ``a a a``), the largest over the samples (``longest_repeat_mean``: their mean);
- ``blank_fraction``: the share of samples whose decoded text is empty or whitespace/newlines only.

``continuation_quality`` generates continuations of held-out prompts with ``lmforge.generation`` (own
``torch.Generator``: the global RNG, and with it exact resume, is untouched) and measures them; the training loop
(``--eval_steps``, CLM), ``lmforge evaluate lm`` and ``lmforge generate`` all use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "continuation_quality",
    "degeneration_metrics",
    "distinct_n",
    "format_degeneration",
    "longest_repeat",
]


def distinct_n(sequences: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams / all n-grams over ``sequences`` (n-grams never cross samples); 0.0 when there are none."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [tuple(seq[i : i + n]) for seq in sequences for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def longest_repeat(sequence: Sequence[int]) -> int:
    """Length of the longest span occurring at least twice in ``sequence`` (overlaps allowed); 0 if none.

    Dynamic programme over suffix pairs: ``run[j]`` = common length of the suffixes at i and j (i < j); O(T^2)
    time, O(T) memory, fine for continuations of a few hundred tokens.
    """
    seq, best = list(sequence), 0
    run = [0] * (len(seq) + 1)
    for i in range(len(seq) - 1, -1, -1):
        for j in range(i + 1, len(seq)):  # ascending j reads run[j + 1] of row i + 1 before it is overwritten
            run[j] = run[j + 1] + 1 if seq[i] == seq[j] else 0
            best = max(best, run[j])
        run[len(seq)] = 0
    return best


def degeneration_metrics(sequences: Sequence[Sequence[int]], texts: Sequence[str]) -> dict[str, float]:
    """``distinct_1``, ``distinct_2``, ``longest_repeat`` (max), ``longest_repeat_mean``, ``blank_fraction`` and
    ``samples`` of generated token ids ``sequences`` and their decoded ``texts`` (one per sequence)."""
    if len(sequences) != len(texts):
        raise ValueError(f"{len(sequences)} sequences but {len(texts)} texts")
    if not sequences:
        raise ValueError("no generated sequences to measure")
    repeats = [longest_repeat(seq) for seq in sequences]
    return {
        "distinct_1": distinct_n(sequences, 1),
        "distinct_2": distinct_n(sequences, 2),
        "longest_repeat": max(repeats),
        "longest_repeat_mean": sum(repeats) / len(repeats),
        "blank_fraction": sum(not t.strip() for t in texts) / len(texts),
        "samples": len(sequences),
    }


def format_degeneration(metrics: dict[str, float]) -> str:
    """One line for people: ``4 samples: distinct-1 0.62, distinct-2 0.85, longest repeat 5 tokens, blank 0/4``."""
    count = int(metrics["samples"])
    blank = round(metrics["blank_fraction"] * count)
    return (
        f"{count} samples: distinct-1 {metrics['distinct_1']:.2f}, distinct-2 {metrics['distinct_2']:.2f}, "
        f"longest repeat {metrics['longest_repeat']} token{'' if metrics['longest_repeat'] == 1 else 's'}, "
        f"blank {blank}/{count}"
    )


def continuation_quality(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    decode: Callable[[list[int]], str],
    max_new_tokens: int,
    generator: Any,
    eos_token_id: int | None = None,
    pad_token_id: int = 0,
    do_sample: bool = True,
    top_k: int | None = 50,
    device: Any = None,
) -> tuple[list[list[int]], dict[str, float]]:
    """Continue each prompt (one at a time, so a sample does not depend on the others in the batch), and return
    the new token ids (EOS excluded) with their ``degeneration_metrics``. ``decode`` turns ids into text (special
    tokens skipped); ``generator``: a ``torch.Generator`` on the model's device (R15)."""
    from lmforge.generation import generate_ids

    if not prompts:
        raise ValueError("no prompts to continue")
    continuations = []
    for prompt in prompts:
        (new,) = generate_ids(
            model, [list(prompt)], max_new_tokens=max_new_tokens, do_sample=do_sample,
            top_k=top_k if do_sample else None, generator=generator, eos_token_id=eos_token_id,
            pad_token_id=pad_token_id, device=device,
        )  # fmt: skip
        if eos_token_id is not None and new and new[-1] == eos_token_id:
            new = new[:-1]
        continuations.append(new)
    return continuations, degeneration_metrics(continuations, [decode(ids) for ids in continuations])
