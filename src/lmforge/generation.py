"""Autoregressive generation for any causal ``LanguageModel``: KV-cached when its backbone takes
``past_key_values``/``use_cache`` (``lmforge.models.gpt``), full recompute of the prefix otherwise (BERT ``clm``).

Decoding: greedy, or sampling with temperature, top-k and top-p (nucleus); an optional repetition penalty;
``max_new_tokens``; EOS per row (finished rows are padded, generation stops when every row has finished); batched
prompts of different lengths, left-padded. Logits are processed in HF ``generate``'s order: repetition penalty,
then temperature, top-k, top-p. Sampling draws from an explicit ``torch.Generator`` only (R15), so a seed
reproduces a sample and the global RNG is never touched (training can sample mid-run and still resume exactly).

References: HF ``GenerationMixin`` (``RepetitionPenaltyLogitsProcessor``, ``TopKLogitsWarper``,
``TopPLogitsWarper``; left padding with ``position_ids = cumsum(attention_mask) - 1``); Keskar et al. 2019 (CTRL)
for the repetition penalty; Holtzman et al. 2020 for top-p; Fan et al. 2018 for top-k.

Speed: the backbone runs on the new token only (KV cache) and only the last position is projected to the
vocabulary, with an operand layout chosen for CPU BLAS by batch size (``_last_position_head``).

Deviations from HF: the repetition penalty counts real tokens only (HF also penalises the pad id that fills left
padding); a backbone without ``position_ids`` cannot place left-padded prompts at position 0, so such models
generate row by row instead (same results as one prompt at a time).

Legend: B batch, T prompt length (padded), S tokens so far, V vocabulary.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lmforge.heads.lm import CausalLMHead, LanguageModel
from lmforge.nn.attention import KeyValueBuffer
from lmforge.nn.moe import pop_router_losses

__all__ = ["apply_repetition_penalty", "generate", "generate_ids", "next_token_logits", "supports_cache"]


def _backbone_parameters(model: nn.Module) -> set[str]:
    backbone = getattr(model, "backbone", model)
    return set(inspect.signature(backbone.forward).parameters)


def supports_cache(model: nn.Module) -> bool:
    """True when the backbone's forward takes ``past_key_values``, ``use_cache`` and ``position_ids``."""
    return {"past_key_values", "use_cache", "position_ids"} <= _backbone_parameters(model)


def apply_repetition_penalty(logits_BV: Tensor, seen_BV: Tensor, penalty: float) -> Tensor:
    """CTRL penalty on tokens already in the sequence: positive logits divided by ``penalty``, negative ones
    multiplied (so a penalty > 1 always lowers them)."""
    penalized_BV = torch.where(logits_BV > 0, logits_BV / penalty, logits_BV * penalty)
    return torch.where(seen_BV, penalized_BV, logits_BV)


def next_token_logits(
    logits_BV: Tensor,
    *,
    seen_BV: Tensor | None = None,
    repetition_penalty: float = 1.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Tensor:
    """fp32 logits after the penalty and the sampling warpers; removed tokens are ``-inf``."""
    logits_BV = logits_BV.float()
    if repetition_penalty != 1.0 and seen_BV is not None:
        logits_BV = apply_repetition_penalty(logits_BV, seen_BV, repetition_penalty)
    if temperature != 1.0:
        logits_BV = logits_BV / temperature
    if top_k is not None and top_k < logits_BV.shape[-1]:
        threshold_B1 = torch.topk(logits_BV, top_k, dim=-1).values[:, -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < threshold_B1, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_BV, order_BV = torch.sort(logits_BV, dim=-1, descending=True)
        probs_BV = torch.softmax(sorted_BV, dim=-1)
        mass_before_BV = probs_BV.cumsum(dim=-1) - probs_BV  # probability of the strictly better tokens
        drop_sorted_BV = mass_before_BV >= top_p  # the top token always stays (its mass_before is 0)
        drop_BV = torch.zeros_like(drop_sorted_BV).scatter(-1, order_BV, drop_sorted_BV)
        logits_BV = logits_BV.masked_fill(drop_BV, float("-inf"))
    return logits_BV


def _check_arguments(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None,
                     repetition_penalty: float) -> None:  # fmt: skip
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use do_sample=False for greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")


@torch.no_grad()
def generate(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_token_id: int | None = None,
    pad_token_id: int = 0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Continue left-padded prompts ``input_ids (B, T)``; returns ``(B, T + n)`` with ``n <= max_new_tokens``.

    ``attention_mask (B, T)``: 1 = real token (padding must be on the left). Rows that produced ``eos_token_id``
    continue with ``pad_token_id``. ``use_cache=False`` forces full recompute (the reference the cache is tested
    against). The model is put in eval mode for the call and restored afterwards.
    """
    _check_arguments(max_new_tokens, temperature, top_k, top_p, repetition_penalty)
    if not isinstance(model, LanguageModel) or model.objective != "clm":
        raise ValueError(f"generation needs a causal LanguageModel, got {type(model).__name__} "
                         f"with objective {getattr(model, 'objective', None)!r}")  # fmt: skip
    if input_ids.ndim != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be (batch, prompt length >= 1), got {tuple(input_ids.shape)}")
    mask_BT = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.device).long()
    if bool((mask_BT[:, 1:] < mask_BT[:, :-1]).any()) or not bool(mask_BT[:, -1].all()):
        raise ValueError("attention_mask must be left-padded: zeros only before each prompt, last column all ones")
    is_padded = not bool(mask_BT.all())
    parameters = _backbone_parameters(model)
    if is_padded and "position_ids" not in parameters:  # cannot shift positions: one prompt at a time
        prompt_len, rows = input_ids.shape[1], []
        for i in range(input_ids.shape[0]):
            start = int((mask_BT[i] == 0).sum())
            row = generate(
                model, input_ids[i : i + 1, start:], max_new_tokens=max_new_tokens, do_sample=do_sample,
                temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                eos_token_id=eos_token_id, pad_token_id=pad_token_id, generator=generator, use_cache=use_cache,
            )  # fmt: skip
            rows.append(row[0, prompt_len - start :])
        return torch.cat([input_ids, _right_pad(rows, pad_token_id)], dim=1)

    was_training = model.training
    model.eval()
    try:
        return _decode(
            model, input_ids, mask_BT, is_padded=is_padded, cached=use_cache and supports_cache(model),
            max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
            repetition_penalty=repetition_penalty, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
            generator=generator,
        )  # fmt: skip
    finally:
        pop_router_losses(model.backbone)  # MoE statistics of decoding must not reach the next training step
        model.train(was_training)


def _decode(
    model: LanguageModel,
    input_ids: Tensor,
    mask_BT: Tensor,
    *,
    is_padded: bool,
    cached: bool,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    repetition_penalty: float,
    eos_token_id: int | None,
    pad_token_id: int,
    generator: torch.Generator | None,
) -> Tensor:
    """The decoding loop of ``generate`` (arguments already validated, model in eval mode)."""
    position_ids_BT = (mask_BT.cumsum(-1) - 1).clamp(min=0) if is_padded else None
    seen_BV = None
    if repetition_penalty != 1.0:
        vocab_size = model.get_input_embeddings().num_embeddings
        seen_BV = torch.zeros(input_ids.shape[0], vocab_size, dtype=torch.bool, device=input_ids.device)
        seen_BV.scatter_(1, input_ids, mask_BT.bool())  # pad slots scatter False (a no-op)
    project = _last_position_head(model, input_ids.shape[0])
    sequence_BS, mask_BS, position_ids_BS = input_ids, mask_BT, position_ids_BT
    finished_B = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    new_tokens: list[Tensor] = []
    past = None
    step_ids_BT, step_positions = input_ids, position_ids_BT
    for _ in range(max_new_tokens):
        # The backbone runs on the new tokens (cached) or the whole sequence; only the last position is projected.
        if cached:
            hidden_BTD, past = model.backbone(
                step_ids_BT,
                attention_mask=mask_BS if is_padded else None,
                use_cache=True,
                past_key_values=past,
                position_ids=step_positions,
            )
            if isinstance(past[0], tuple):  # just after the prompt: move the cache into buffers that grow in place
                past = [KeyValueBuffer(k, v, capacity=k.shape[-2] + max_new_tokens) for k, v in past]
        else:
            extra = {"position_ids": position_ids_BS} if is_padded else {}
            hidden_BTD = model.backbone(sequence_BS, attention_mask=mask_BS if is_padded else None, **extra)
        logits_BV = next_token_logits(
            project(hidden_BTD[:, -1]), seen_BV=seen_BV, repetition_penalty=repetition_penalty,
            temperature=temperature if do_sample else 1.0, top_k=top_k if do_sample else None,
            top_p=top_p if do_sample else None,
        )  # fmt: skip
        if do_sample:
            probs_BV = torch.softmax(logits_BV, dim=-1)
            next_B = torch.multinomial(probs_BV, 1, generator=generator).squeeze(1)
        else:
            next_B = logits_BV.argmax(dim=-1)
        next_B = next_B.masked_fill(finished_B, pad_token_id)
        new_tokens.append(next_B)
        if seen_BV is not None:
            seen_BV.scatter_(1, next_B[:, None], ~finished_B[:, None])
        if eos_token_id is not None:
            finished_B = finished_B | (next_B == eos_token_id)
            if bool(finished_B.all()):
                break
        step_ids_BT = next_B[:, None]
        if not cached:
            sequence_BS = torch.cat([sequence_BS, step_ids_BT], dim=1)
        if is_padded:
            mask_BS = torch.cat([mask_BS, torch.ones_like(step_ids_BT)], dim=1)
            step_positions = step_positions[:, -1:] + 1
            if not cached:
                position_ids_BS = torch.cat([position_ids_BS, step_positions], dim=1)
    return torch.cat([input_ids, torch.stack(new_tokens, dim=1)], dim=1)


def _last_position_head(model: LanguageModel, batch_size: int) -> Callable[[Tensor], Tensor]:
    """``hidden (B, D) -> logits (B, V)`` for decoding; the head is most of a small model's decoding time
    (32000 x 256 here vs 4 layers of 256 x 256), and CPU BLAS speed depends a lot on the operand layout.

    For a ``CausalLMHead`` on CPU (measured with oneDNN/MKL, torch 2.13, ``benchmarks/gpt.md``): one row runs ~3x
    faster as ``h @ W_DV`` on a ``(D, V)`` copy made once per call than as ``F.linear(h, W_VD)``; a few rows run
    ~1.5x faster as the tall-skinny ``W_VD @ h^T``. The choice depends only on the batch size (never on timing),
    so results stay reproducible. Other heads, and other devices, run unchanged.
    """
    head = model.head
    if not isinstance(head, CausalLMHead) or head.decoder.output_weight.device.type != "cpu":
        return lambda h_BD: head(h_BD[:, None])[:, 0]
    weight_VD, bias_V = head.decoder.output_weight.detach(), head.decoder.bias
    if batch_size == 1:
        weight_DV = weight_VD.t().contiguous()
        project = lambda h_BD: h_BD @ weight_DV  # noqa: E731
    else:
        project = lambda h_BD: (weight_VD @ h_BD.t()).t()  # noqa: E731
    return project if bias_V is None else (lambda h_BD: project(h_BD) + bias_V)


def _right_pad(rows: Sequence[Tensor], pad_token_id: int) -> Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad_token_id, dtype=rows[0].dtype, device=rows[0].device)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def generate_ids(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    pad_token_id: int = 0,
    eos_token_id: int | None = None,
    device: torch.device | str | None = None,
    **options,
) -> list[list[int]]:
    """Left-pad ``prompts`` into one batch, ``generate``, and return each row's new tokens, up to and including
    its first EOS. ``options`` are ``generate``'s keyword arguments (``max_new_tokens``, ``do_sample``, ...)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = device or next(model.parameters()).device
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, prompt in enumerate(prompts):
        input_ids[i, width - len(prompt) :] = torch.tensor(list(prompt))
        attention_mask[i, width - len(prompt) :] = 1
    sequences = generate(
        model, input_ids.to(device), attention_mask.to(device), pad_token_id=pad_token_id,
        eos_token_id=eos_token_id, **options,
    )  # fmt: skip
    out = []
    for row in sequences[:, width:].tolist():
        if eos_token_id is not None and eos_token_id in row:
            row = row[: row.index(eos_token_id) + 1]
        out.append(row)
    return out
