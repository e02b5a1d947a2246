"""An independent, straightforward GAU-alpha forward written from the formulas (architectures.md 1.1, bert4keras
``GatedAttentionUnit``/``attention_normalize``), reading weights in JunnYu/GAU-alpha-pytorch naming.

It shares no code with ``lmforge`` on purpose: loops over layers, explicit sin/cos, RoPE written the port's way
(``cat(x1 cos - x2 sin, x1 sin + x2 cos)`` over even/odd features), the port's ``-1e4`` fill for masked scores,
``n = mask.sum()`` per example. Used by ``tests/models/test_gau_alpha.py`` and ``make_gau_alpha_golden.py``.
"""

from __future__ import annotations

import math

import torch


def fixed_init(shape: tuple[int, ...], salt: float) -> torch.Tensor:
    """Deterministic, non-degenerate weights: a scaled sine of the flat index (torchtune-style fixed init)."""
    numel = math.prod(shape)
    return (torch.sin(torch.arange(numel, dtype=torch.float64) * 0.37 + salt) * 0.3).view(shape).float()


def junnyu_state_dict(*, vocab: int, hidden: int, layers: int, e: int, s: int, types: int = 2) -> dict:
    sd = {
        "gau_alpha.embeddings.word_embeddings.weight": fixed_init((vocab, hidden), 0.1),
        "gau_alpha.embeddings.token_type_embeddings.weight": fixed_init((types, hidden), 0.2),
    }
    for i in range(layers):
        pre = f"gau_alpha.encoder.layer.{i}.gau."
        sd[pre + "i_dense.weight"] = fixed_init((2 * e + s, hidden), 1.0 + i) * hidden**-0.5 * 3
        sd[pre + "o_dense.weight"] = fixed_init((hidden, e), 2.0 + i) * e**-0.5 * 3
        sd[pre + "q_scaleoffset.weight"] = 1 + fixed_init((s,), 3.0 + i)
        sd[pre + "k_scaleoffset.weight"] = 1 + fixed_init((s,), 4.0 + i)
    sd["cls.predictions.decoder.weight"] = sd["gau_alpha.embeddings.word_embeddings.weight"]
    return sd


def rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(torch.mean(x * x, dim=-1, keepdim=True) + eps)


def rope_port_style(x: torch.Tensor) -> torch.Tensor:
    """x (B, T, s): angles p * 10000^(-2i/s) per pair (2i, 2i+1); output laid out as cat(evens', odds')."""
    _, t, s = x.shape
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    inv = torch.pow(10000.0, -2 * torch.arange(s // 2, dtype=torch.float32) / s)[None, :]
    sin, cos = torch.sin(pos * inv), torch.cos(pos * inv)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def gau_alpha_logits(
    sd: dict,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor,
    *,
    layers: int,
    e: int,
    s: int,
    eps: float = 1e-12,
    normalization: str = "softmax_plus",
) -> torch.Tensor:
    x = sd["gau_alpha.embeddings.word_embeddings.weight"][input_ids]
    x = rms(x + sd["gau_alpha.embeddings.token_type_embeddings.weight"][token_type_ids], eps)
    mask = attention_mask.float()[:, None, :]  # (B, 1, T)
    n = mask.sum(-1, keepdim=True)  # valid keys per example
    for i in range(layers):
        pre = f"gau_alpha.encoder.layer.{i}.gau."
        h = torch.nn.functional.silu(x @ sd[pre + "i_dense.weight"].T)
        u, v, z = h[..., :e], h[..., e : 2 * e], h[..., 2 * e :]
        q = rope_port_style(z * sd[pre + "q_scaleoffset.weight"])
        k = rope_port_style(z * sd[pre + "k_scaleoffset.weight"])
        a = torch.einsum("bmd,bnd->bmn", q, k) / math.sqrt(s)
        if normalization == "softmax_plus":
            a = a.masked_fill(mask == 0, -1e4)
            weights = torch.softmax(a * torch.log(n) / math.log(512), dim=-1)
        else:
            weights = torch.relu(a) ** 2 / n * mask
        o = (u * torch.einsum("bmn,bnd->bmd", weights, v)) @ sd[pre + "o_dense.weight"].T
        x = rms(x + o, eps)
    return x @ sd["cls.predictions.decoder.weight"].T
