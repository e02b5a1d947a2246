"""Peer implementations per architecture for ``lmforge bench speed``: one small table keyed by architecture name.

Each entry names the peer, the function that builds it from *our* config (``"module:function"``, imported only
when used: ``transformers`` stays behind ``lmforge.hf``), its options and which of our tasks it is timed against
(a peer with an LM head against our LM, a bare encoder against our backbone). An architecture without an entry,
or whose peer cannot be built, is benchmarked alone and reported as "no peer" with the reason.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = ["PEERS", "Peer", "build_peer", "flash_pytorch_gau", "flash_pytorch_transformer"]


@dataclass(frozen=True)
class Peer:
    label: str
    """Shown in the tables, e.g. "transformers BertForMaskedLM"."""
    builder: str
    """"module:function" called as ``function(our_config, **options)``."""
    task: str
    """Our task it matches: "mlm", "clm" or "backbone"."""
    options: dict[str, Any] = field(default_factory=dict)


PEERS: dict[str, Peer] = {
    "bert": Peer("transformers BertForMaskedLM", "lmforge.hf.peers:hf_peer", "mlm", {"hf_class": "BertForMaskedLM"}),
    "gpt": Peer("transformers GPT2LMHeadModel", "lmforge.hf.peers:hf_peer", "clm", {"hf_class": "GPT2LMHeadModel"}),
    "reformer": Peer(
        "transformers ReformerModelWithLMHead",
        "lmforge.hf.peers:hf_peer",
        "clm",
        {"hf_class": "ReformerModelWithLMHead"},
    ),
    "canine": Peer("transformers CanineModel", "lmforge.hf.peers:hf_peer", "backbone", {"hf_class": "CanineModel"}),
    "flash": Peer("FLASH-pytorch FLASHTransformer", "lmforge.bench.peers:flash_pytorch_transformer", "mlm"),
    "flash-quad": Peer("FLASH-pytorch GAU stack", "lmforge.bench.peers:flash_pytorch_gau", "mlm"),
}


def build_peer(name: str, config: Any) -> nn.Module:
    """The peer of architecture ``name`` for our (already built) ``config``; ValueError when there is none."""
    if name not in PEERS:
        raise ValueError(f"no peer implementation listed for {name!r}")
    peer = PEERS[name]
    module, _, function = peer.builder.partition(":")
    return getattr(importlib.import_module(module), function)(config, **peer.options)


def flash_pytorch_transformer(cfg: Any) -> nn.Module:
    """lucidrains ``FLASHTransformer`` (LM head included) at our width, depth, G, s and e; causal as ``cfg``."""
    from flash_pytorch import FLASHTransformer

    return FLASHTransformer(
        dim=cfg.hidden_size,
        num_tokens=cfg.vocab_size,
        depth=cfg.num_hidden_layers,
        group_size=cfg.group_size,
        query_key_dim=cfg.attention_key_size,
        expansion_factor=cfg.intermediate_size / cfg.hidden_size,
        causal=cfg.is_decoder,
        shift_tokens=cfg.shift_tokens,
    )


class _GAUStack(nn.Module):
    """Token embedding -> lucidrains ``GAU`` layers (pre-norm, residual inside) -> LayerNorm + Linear logits."""

    def __init__(self, cfg: Any):
        super().__init__()
        from flash_pytorch import GAU

        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(
            GAU(
                dim=cfg.hidden_size,
                query_key_dim=cfg.attention_key_size,
                expansion_factor=cfg.intermediate_size / cfg.hidden_size,
                causal=cfg.is_decoder,
            )
            for _ in range(cfg.num_hidden_layers)
        )
        self.to_logits = nn.Sequential(nn.LayerNorm(cfg.hidden_size), nn.Linear(cfg.hidden_size, cfg.vocab_size))

    def forward(self, input_ids):
        x = self.embed(input_ids)
        for layer in self.layers:
            x = layer(x)
        return self.to_logits(x)


def flash_pytorch_gau(cfg: Any) -> nn.Module:
    """A FLASH-Quad peer from lucidrains' quadratic ``GAU`` layer (the package has no GAU model of its own)."""
    return _GAUStack(cfg)
