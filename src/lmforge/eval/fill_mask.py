"""``lmforge fill-mask RUN "...[MASK]..." --top_k 5``: the top-k tokens and probabilities for every [MASK].

``predict_masks`` splits the text on the literal ``[MASK]`` and inserts the tokenizer's mask id between the
encoded pieces: our tokenizers deliberately encode a ``"[MASK]"`` spelled in raw text as ordinary characters
(``lmforge.data.tokenizer``), so the mask must be placed by id. The input is ``[CLS] text [SEP]`` as in training.
Probabilities are the softmax over the vocabulary at each mask position, all masks predicted jointly in one
forward pass (as HF's fill-mask pipeline does).

This module's top level imports no torch (``--help`` stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "MASK",
    "FillMaskArgs",
    "encode_masked",
    "fill_mask",
    "format_predictions",
    "position_limit",
    "predict_masks",
]

MASK = "[MASK]"


@dataclass  # not kw_only: model and text are positional (lmforge fill-mask RUN TEXT)
class FillMaskArgs:
    model: str
    """A masked LM: a run (its newest checkpoint), checkpoint-STEP, export, Hugging Face or JunnYu directory."""
    text: str
    """Text with one or more [MASK] markers, e.g. "今天的天[MASK]很好"."""
    top_k: int = 5
    """Predictions to show for each mask."""


def encode_masked(tokenizer: Any, text: str, *, mask_id: int) -> list[int]:
    """``[CLS] text [SEP]`` ids with ``mask_id`` at every literal ``[MASK]`` (either special token is left out when
    the tokenizer has none)."""
    ids = [tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else []
    for i, piece in enumerate(text.split(MASK)):
        if i:
            ids.append(mask_id)
        ids.extend(tokenizer.encode(piece))
    if tokenizer.sep_token_id is not None:
        ids.append(tokenizer.sep_token_id)
    return ids


def position_limit(config: Any) -> int | None:
    """The longest input a model takes: ``max_position_embeddings`` for absolute positions, else None (RoPE)."""
    limit = getattr(config, "max_position_embeddings", None)
    return limit if getattr(config, "position_embedding_type", None) == "absolute" else None


def predict_masks(model: Any, tokenizer: Any, text: str, *, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each ``[MASK]`` in ``text`` (left to right): ``[(token, probability), ...]`` best first."""
    import torch

    if MASK not in text:
        raise ValueError(f"the text contains no {MASK}: {text!r}")
    if top_k < 1:
        raise ValueError(f"--top_k must be >= 1, got {top_k}")
    from lmforge.data.lm_tokenizer import require_mask_token_id

    mask_id = require_mask_token_id(tokenizer)  # a one-line error for tokenizers without one (GPT-2, sentencepiece)
    ids = encode_masked(tokenizer, text, mask_id=mask_id)
    limit = position_limit(model.config)
    if limit is not None and len(ids) > limit:
        raise ValueError(f"the text is {len(ids)} tokens long, the model takes at most {limit}")
    input_ids = torch.tensor([ids], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(input_ids, attention_mask=torch.ones_like(input_ids)).logits[0]
    positions = (input_ids[0] == mask_id).nonzero().flatten().tolist()
    results = []
    for position in positions:
        probs = torch.softmax(logits[position].float(), dim=-1)
        top = torch.topk(probs, min(top_k, probs.numel()))
        tokens = tokenizer.convert_ids_to_tokens(top.indices.tolist())
        results.append([(token, float(p)) for token, p in zip(tokens, top.values.tolist())])
    return results


def format_predictions(text: str, predictions: list[list[tuple[str, float]]]) -> str:
    lines = [text]
    for i, options in enumerate(predictions, start=1):
        shown = "  ".join(f"{token} {p:.3f}" for token, p in options)
        lines.append(f"  {MASK} #{i}: {shown}")
    best = iter(options[0][0].removeprefix("##") for options in predictions)
    filled = "".join(piece if i == 0 else next(best) + piece for i, piece in enumerate(text.split(MASK)))
    lines.append(f"  best: {filled}")
    return "\n".join(lines)


def fill_mask(args: FillMaskArgs) -> list[list[tuple[str, float]]]:
    """CLI entry point: load the model and tokenizer of ``args.model``, print and return the predictions."""
    from lmforge.models.loading import load_model

    loaded = load_model(args.model, task="mlm", with_tokenizer=True)  # any source with an MLM head; one line
    predictions = predict_masks(loaded.model, loaded.tokenizer, args.text, top_k=args.top_k)
    print(format_predictions(args.text, predictions))
    return predictions
