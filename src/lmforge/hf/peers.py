"""Hugging Face ``transformers`` models as speed peers of lmforge architectures (``lmforge bench speed``).

A peer is built from *our* config through the architecture's own converter (``models/<arch>/convert.py``
``to_hf_config``), so width, depth, heads, FFN and vocabulary match by construction; weights stay random (they do
not change the cost of a dense fp32 step). Attention runs on SDPA where the HF class supports it, as ours does.
"""

from __future__ import annotations

import importlib
from typing import Any

import transformers
from torch import nn

__all__ = ["hf_peer"]


def hf_peer(config: Any, *, hf_class: str) -> nn.Module:
    """``transformers.<hf_class>`` for our ``config``; ValueError when the architecture has no ``to_hf_config``."""
    converter = importlib.import_module(type(config).__module__.rsplit(".", 1)[0] + ".convert")
    to_hf_config = getattr(converter, "to_hf_config", None)
    if to_hf_config is None:
        raise ValueError(f"{converter.__name__} has no to_hf_config: cannot build a {hf_class} peer")
    fields = dict(to_hf_config(config))
    model_type = fields.pop("model_type")
    fields.pop("architectures", None)
    hf_config = transformers.AutoConfig.for_model(model_type, **fields)
    model_class = getattr(transformers, hf_class)
    if getattr(model_class, "_supports_sdpa", False):
        return model_class._from_config(hf_config, attn_implementation="sdpa")
    return model_class(hf_config)  # no SDPA kernel (e.g. Reformer's LSH attention): its own attention
