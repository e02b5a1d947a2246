"""Degeneration measures (``lmforge.eval.degeneration``) on hand-made sequences, and on a tiny GPT's samples."""

from __future__ import annotations

import pytest
import torch

from lmforge.eval.degeneration import (
    continuation_quality,
    degeneration_metrics,
    distinct_n,
    format_degeneration,
    longest_repeat,
)
from lmforge.models.registry import build_model


def test_distinct_n_pools_ngrams_within_samples() -> None:
    sequences = [[1, 2, 3, 1], [1, 2]]
    assert distinct_n(sequences, 1) == 3 / 6  # 1 2 3 1 1 2
    assert distinct_n(sequences, 2) == 3 / 4  # (1,2) (2,3) (3,1) (1,2): no n-gram crosses samples
    assert distinct_n([[7, 7, 7, 7]], 1) == 1 / 4 and distinct_n([[1]], 2) == 0.0
    with pytest.raises(ValueError, match="n must be >= 1"):
        distinct_n(sequences, 0)


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [([], 0), ([1, 2, 3], 0), ([1, 2, 3, 1, 2, 3, 4], 3), ([5, 5, 5, 5], 3), ([1, 2, 1, 3, 1, 2, 1], 3)],
)
def test_longest_repeat(sequence: list[int], expected: int) -> None:
    assert longest_repeat(sequence) == expected


def test_metrics_and_blank_fraction() -> None:
    metrics = degeneration_metrics([[9, 9, 9], [1, 2], [3], []], ["\n\n\n", "好的", " ", ""])
    assert metrics == {
        "distinct_1": 4 / 6,
        "distinct_2": 2 / 3,
        "longest_repeat": 2,
        "longest_repeat_mean": 0.5,
        "blank_fraction": 0.75,
        "samples": 4,
    }
    assert format_degeneration(metrics) == (
        "4 samples: distinct-1 0.67, distinct-2 0.67, longest repeat 2 tokens, blank 3/4"
    )
    with pytest.raises(ValueError, match="2 sequences but 1 texts"):
        degeneration_metrics([[1], [2]], ["a"])


def test_continuations_are_seeded_and_leave_the_global_rng_alone(one_thread: None) -> None:
    torch.manual_seed(0)
    model = build_model("gpt", task="clm", preset="tiny").eval()
    prompts = [[1, 2, 3], [4, 5]]
    state = torch.get_rng_state()
    runs = [
        continuation_quality(
            model,
            prompts,
            decode=lambda ids: " ".join(map(str, ids)),
            max_new_tokens=6,
            generator=torch.Generator().manual_seed(3),
        )
        for _ in range(2)
    ]
    assert torch.equal(torch.get_rng_state(), state)
    assert runs[0] == runs[1] and [len(c) for c in runs[0][0]] == [6, 6]
    assert runs[0][1]["samples"] == 2 and 0.0 < runs[0][1]["distinct_1"] <= 1.0
    greedy, _ = continuation_quality(
        model, prompts, decode=str, max_new_tokens=4, generator=None, do_sample=False, eos_token_id=None
    )
    assert [len(c) for c in greedy] == [4, 4]
