"""Load FLASH-Quad and FLASH weights in JunnYu/FLASHQuad_pytorch naming from local files, and write them back.

- FLASH-Quad: ``FLASHQuadForMaskedLM`` of ``flash/flash.py`` + ``flash/gau.py`` (prefix ``flash_quad.``).
- FLASH: ``FLASHForMaskedLM`` of ``flash/flash_lucidrains.py`` (prefix ``flash.``), whose layers are
  lucidrains/FLASH-pytorch ``FLASH`` modules with the same parameter names, so ``flash_layer_from_lucidrains`` also
  moves weights of ``flash_pytorch.FLASH`` (the parity tests use it).

No ``transformers`` import. Value transforms (everything else is copied):
- ``uv`` (JunnYu GAU) is already our fused ``proj`` (u | v | z). lucidrains' ``to_hidden`` is ``v | gate`` and
  ``to_qk`` is ``z``: ``proj = cat(gate, v, z)`` (``fuse_lucidrains_projection``).
- ScaleNorm: JunnYu's ``scala`` (``x * rsqrt(mean(x^2) + eps) * scala``) and lucidrains' ``g``
  (``x / (||x|| / sqrt(d)) * g``) are our ``scale / sqrt(d)``; eps sits inside the root in JunnYu's, so outputs
  differ by O(eps) relatively (documented tolerance in the tests).
- JunnYu's ``a``, ``b`` (RoPE-product bias for n > 512, never used by its forward) and the persistent
  ``position_ids``/``scaledsin_embeddings`` buffers are accepted and dropped; the sinusoid buffer is checked.
Unknown or missing keys raise one ``ValueError`` listing all of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lmforge.models.common import raise_on_mismatch
from lmforge.models.flash.config import FLASHConfig
from lmforge.models.gau_alpha.convert import read_state_dict
from lmforge.nn.positions import sinusoid_table

__all__ = [
    "LUCIDRAINS_REQUIRED",
    "flash_layer_from_lucidrains",
    "from_junnyu_flash_config",
    "from_junnyu_quad_config",
    "from_junnyu_state_dict",
    "from_lucidrains_config",
    "from_lucidrains_state_dict",
    "fuse_lucidrains_projection",
    "is_lucidrains_state_dict",
    "load_junnyu_checkpoint",
    "to_junnyu_state_dict",
]

Rule = tuple[str, tuple[str, ...], Callable[..., Tensor], Callable[[Tensor], tuple[Tensor, ...]]]


def _same(t: Tensor) -> Tensor:
    return t


def _one(t: Tensor) -> tuple[Tensor]:
    return (t,)


def fuse_lucidrains_projection(hidden: Tensor, qk: Tensor) -> Tensor:
    """lucidrains ``to_hidden`` (rows ``v | gate``) and ``to_qk`` (``z``) -> our fused ``proj`` (``u=gate | v | z``)."""
    v, gate = hidden.chunk(2, dim=0)
    return torch.cat([gate, v, qk], dim=0)


def _split_projection(proj: Tensor, expansion: int) -> tuple[Tensor, Tensor]:
    gate, v, qk = proj.split([expansion, expansion, proj.shape[0] - 2 * expansion], dim=0)
    return torch.cat([v, gate], dim=0), qk


def _norm_rules(ours: str, theirs: str, cfg: FLASHConfig, gain_name: str) -> list[Rule]:
    if cfg.norm_type == "layernorm":
        return [(f"{ours}.{p}", (f"{theirs}.{p}",), _same, _one) for p in ("weight", "bias")]
    root_d = math.sqrt(cfg.hidden_size)
    return [(f"{ours}.scale", (f"{theirs}.{gain_name}",), lambda g: g * root_d, lambda s: (s / root_d,))]


def flash_layer_from_lucidrains(
    ours: str, theirs: str, cfg: FLASHConfig, *, offset_scale_names: tuple[str, str] = ("weight", "bias")
) -> list[Rule]:
    """Rules for one lucidrains ``FLASH`` layer (``theirs``) -> our ``FLASHLayer`` (``ours``).

    ``offset_scale_names``: JunnYu's copy names the scale/offset ``weight``/``bias``, FLASH-pytorch 0.1.9
    ``gamma``/``beta``.
    """
    offset_names = dict(zip(("weight", "bias"), offset_scale_names, strict=True))
    e = cfg.intermediate_size
    params = ("weight", "bias") if cfg.use_bias else ("weight",)
    rules = _norm_rules(f"{ours}.norm", f"{theirs}.norm", cfg, "g")
    for p in params:
        rules += [
            (
                f"{ours}.gau.proj.{p}",
                (f"{theirs}.to_hidden.0.{p}", f"{theirs}.to_qk.0.{p}"),
                fuse_lucidrains_projection,
                lambda t: _split_projection(t, e),
            ),
            (f"{ours}.gau.scale_offset.{p}", (f"{theirs}.qk_offset_scale.{offset_names[p]}",), _same, _one),
            (f"{ours}.gau.out.{p}", (f"{theirs}.to_out.{p}",), _same, _one),
        ]
    if cfg.relative_position == "t5":
        key = "relative_attention_bias.weight"
        rules.append((f"{ours}.gau.relative_bias.{key}", (f"{theirs}.rel_pos_bias.{key}",), _same, _one))
    return rules


def _quad_rules(cfg: FLASHConfig) -> tuple[list[Rule], set[str]]:
    pre, rules = "flash_quad.", []
    rules.append(
        ("backbone.embeddings.tokens.word_embeddings.weight", (f"{pre}embeddings.word_embeddings.weight",), _same, _one)
    )
    if cfg.type_vocab_size:
        rules.append(
            (
                "backbone.embeddings.tokens.token_type_embeddings.weight",
                (f"{pre}embeddings.token_type_embeddings.weight",),
                _same,
                _one,
            )
        )
    rules.append(("backbone.embeddings.positions.scale", (f"{pre}embeddings.scaledsin_scalar",), _same, _one))
    rules += _norm_rules("backbone.embeddings.norm", f"{pre}embeddings.LayerNorm", cfg, "scala")
    dropped = {f"{pre}embeddings.position_ids", f"{pre}embeddings.scaledsin_embeddings"}
    for i in range(cfg.num_hidden_layers):
        ours, theirs = f"backbone.layers.{i}", f"{pre}encoder.layer.{i}"
        rules += _norm_rules(f"{ours}.norm", f"{theirs}.LayerNorm", cfg, "scala")
        rules += [
            (f"{ours}.gau.proj.weight", (f"{theirs}.uv.weight",), _same, _one),
            (f"{ours}.gau.proj.bias", (f"{theirs}.uv.bias",), _same, _one),
            (f"{ours}.gau.scale_offset.weight", (f"{theirs}.weight",), _same, _one),
            (f"{ours}.gau.scale_offset.bias", (f"{theirs}.bias",), _same, _one),
            (f"{ours}.gau.out.weight", (f"{theirs}.o.weight",), _same, _one),
            (f"{ours}.gau.out.bias", (f"{theirs}.o.bias",), _same, _one),
            (f"{ours}.gau.relative_bias.weight", (f"{theirs}.w",), _same, _one),
        ]
        dropped |= {f"{theirs}.a", f"{theirs}.b"}
    rules += [
        ("head.dense.weight", ("cls.predictions.transform.dense.weight",), _same, _one),
        ("head.dense.bias", ("cls.predictions.transform.dense.bias",), _same, _one),
        ("head.decoder.bias", ("cls.predictions.bias",), _same, _one),
    ]
    rules += _norm_rules("head.norm", "cls.predictions.transform.LayerNorm", cfg, "scala")
    return rules, dropped


def _flash_rules(cfg: FLASHConfig) -> tuple[list[Rule], set[str]]:
    pre = "flash."
    rules: list[Rule] = [
        (
            "backbone.embeddings.tokens.word_embeddings.weight",
            (f"{pre}embeddings.word_embeddings.weight",),
            _same,
            _one,
        ),
        ("backbone.embeddings.positions.scale", (f"{pre}embeddings.scale",), _same, _one),
    ]
    for i in range(cfg.num_hidden_layers):
        rules += flash_layer_from_lucidrains(f"backbone.layers.{i}", f"{pre}encoder.layers.{i}", cfg)
    rules += [
        (f"backbone.final_norm.{p}", (f"cls.predictions.LayerNorm.{p}",), _same, _one) for p in ("weight", "bias")
    ]
    rules.append(("head.decoder.bias", ("cls.predictions.decoder.bias",), _same, _one))
    return rules, set()


def _rules(cfg: FLASHConfig, model: str) -> tuple[list[Rule], set[str], dict[str, str]]:
    """Rules, JunnYu keys we drop, and tied JunnYu copies (copy -> original) that must be equal."""
    if model == "flash-quad":
        if cfg.type_vocab_size not in (0, 2) or cfg.relative_position != "toeplitz":
            raise ValueError("JunnYu FLASH-Quad has a Toeplitz bias; set relative_position='toeplitz'")
        rules, dropped = _quad_rules(cfg)
        tied = {
            "cls.predictions.decoder.weight": "flash_quad.embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias",
        }
        return rules, dropped, tied
    if model == "flash":
        if cfg.type_vocab_size or cfg.relative_position != "t5":
            raise ValueError("JunnYu FLASH has no token types and a T5 bias; use from_junnyu_flash_config")
        rules, dropped = _flash_rules(cfg)
        return rules, dropped, {"cls.predictions.decoder.weight": "flash.embeddings.word_embeddings.weight"}
    raise ValueError(f"model must be 'flash-quad' or 'flash', got {model!r}")


def from_junnyu_state_dict(sd: Mapping[str, Tensor], cfg: FLASHConfig, *, model: str) -> dict[str, Tensor]:
    """JunnYu ``FLASHQuadForMaskedLM`` (``model="flash-quad"``) or ``FLASHForMaskedLM`` (``"flash"``) -> ours."""
    rules, dropped, tied = _rules(cfg, model)
    expected = {key for _, theirs, _, _ in rules for key in theirs}
    raise_on_mismatch(expected - set(sd), set(sd) - expected - dropped - set(tied), f"JunnYu {model} state dict")
    for copy, original in tied.items():
        if copy in sd and not torch.equal(sd[copy], sd[original]):
            raise ValueError(f"{copy} differs from {original}, but our model stores them once (tied)")
    table_key = "flash_quad.embeddings.scaledsin_embeddings"
    if table_key in sd:
        table = sinusoid_table(sd[table_key].shape[0], dim=cfg.hidden_size)
        if sd[table_key].shape != table.shape or not torch.allclose(sd[table_key].float(), table, atol=1e-4):
            raise ValueError(f"{table_key} is not the sinusoid table of width {cfg.hidden_size}")
    return {ours: to_ours(*(sd[k] for k in theirs)) for ours, theirs, to_ours, _ in rules}


def to_junnyu_state_dict(our_sd: Mapping[str, Tensor], cfg: FLASHConfig, *, model: str) -> dict[str, Tensor]:
    """Our ``LanguageModel`` state dict -> JunnYu naming (tied copies written out, unused ``a``/``b`` omitted)."""
    rules, _, tied = _rules(cfg, model)
    expected = {ours for ours, _, _, _ in rules}
    raise_on_mismatch(expected - set(our_sd), set(our_sd) - expected, f"our {model} state dict")
    out: dict[str, Tensor] = {}
    for ours, theirs, _, to_theirs in rules:
        out.update(zip(theirs, to_theirs(our_sd[ours]), strict=True))
    out.update({copy: out[original] for copy, original in tied.items()})
    return out


def from_junnyu_quad_config(hf: Mapping[str, Any], **overrides: Any) -> FLASHConfig:
    """``FLASHConfig`` matching JunnYu ``FLASHQuadConfig`` (kernel n fixed at ``max_position_embeddings``)."""
    hidden = hf.get("hidden_size", 768)
    max_len = hf.get("max_position_embeddings", 512)
    fields = dict(
        vocab_size=hf.get("vocab_size", 12000),
        hidden_size=hidden,
        num_hidden_layers=hf.get("num_hidden_layers", 24),
        intermediate_size=int(hf.get("expansion_factor", 2) * hidden),
        attention_key_size=hf.get("s", 128),
        max_position_embeddings=max_len,
        type_vocab_size=hf.get("type_vocab_size", 2),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
        norm_type="layernorm" if hf.get("norm_type", "scale_norm") == "layer_norm" else "scalenorm",
        hidden_act=hf.get("hidden_act", "silu"),
        dropout=hf.get("dropout", 0.0),
        pad_token_id=hf.get("pad_token_id", 0),
        relative_position="toeplitz",
        rope_pairing="half",
        quad_length=max_len,
        position_scale_init=None,
    )
    return FLASHConfig(**(fields | overrides))


def from_junnyu_flash_config(hf: Mapping[str, Any], **overrides: Any) -> FLASHConfig:
    """``FLASHConfig`` matching JunnYu ``FLASHConfig`` (lucidrains layers: T5 bias, RoPE on min(32, s) dims)."""
    hidden, key_size = hf.get("hidden_size", 768), hf.get("query_key_dim", 128)
    fields = dict(
        vocab_size=hf.get("vocab_size", 12000),
        hidden_size=hidden,
        num_hidden_layers=hf.get("num_hidden_layers", 12),
        intermediate_size=int(hf.get("expansion_factor", 2) * hidden),
        attention_key_size=key_size,
        group_size=hf.get("group_size", 256),
        max_position_embeddings=hf.get("max_position_embeddings", 512),
        type_vocab_size=0,
        layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
        norm_type="layernorm" if hf.get("norm_type", "scalenorm") == "layernorm" else "scalenorm",
        attention_dropout=hf.get("dropout", 0.0),
        pad_token_id=hf.get("pad_token_id", 0),
        relative_position="t5",
        rope_pairing="interleaved",
        rotary_dim=min(32, key_size),
        quad_length=None,
        linear_normalizer="valid_length",  # JunnYu/lucidrains divide the bidirectional linear part by n
        position_scale_init=1.0,
    )
    return FLASHConfig(**(fields | overrides))


def load_junnyu_checkpoint(directory: str | Path, *, model: str, task: str = "mlm"):
    """Our FLASH-Quad (``model="flash-quad"``) or FLASH (``"flash"``) ``LanguageModel`` from a local JunnYu dir."""
    from lmforge.models.flash.model import build_flash_mlm, build_quad_clm, build_quad_mlm

    builders = {
        ("flash-quad", "mlm"): (from_junnyu_quad_config, build_quad_mlm),
        ("flash-quad", "clm"): (from_junnyu_quad_config, build_quad_clm),
        ("flash", "mlm"): (from_junnyu_flash_config, build_flash_mlm),
    }
    if (model, task) not in builders:
        raise ValueError(f"cannot load JunnYu {model!r} for task {task!r}; choose from {sorted(builders)}")
    make_config, build = builders[(model, task)]
    cfg = make_config(json.loads((Path(directory) / "config.json").read_text(encoding="utf-8")))
    lm = build(cfg)
    lm.load_state_dict(from_junnyu_state_dict(read_state_dict(directory), cfg, model=model), strict=True)
    return lm


# ----------------------------------------------------------------------------- lucidrains FLASHTransformer
# A bare ``flash_pytorch.FLASHTransformer`` state dict is JunnYu's FLASH layout without the ``flash.`` prefixes (JunnYu
# wraps the same modules), so it is renamed and goes through ``from_junnyu_state_dict``.
_LUCIDRAINS_RENAMES = {
    "token_emb.weight": "flash.embeddings.word_embeddings.weight",
    "abs_pos_emb.scale": "flash.embeddings.scale",
    "to_logits.0.": "cls.predictions.LayerNorm.",
    "to_logits.1.": "cls.predictions.decoder.",
}
# FLASHTransformer arguments that change the function but leave no trace in the weights.
LUCIDRAINS_REQUIRED = ("group_size", "is_decoder", "shift_tokens")


def is_lucidrains_state_dict(sd: Mapping[str, Tensor]) -> bool:
    return "token_emb.weight" in sd and "to_logits.1.weight" in sd and any(k.startswith("layers.0.") for k in sd)


def from_lucidrains_config(sd: Mapping[str, Tensor], overrides: Mapping[str, Any]) -> FLASHConfig:
    """``FLASHConfig`` of a lucidrains ``FLASHTransformer`` state dict: sizes, norm type and rotary width from the
    tensor shapes; ``LUCIDRAINS_REQUIRED`` must come from ``overrides`` (``--model_overrides``)."""
    missing = [name for name in LUCIDRAINS_REQUIRED if name not in overrides]
    if missing:
        example = json.dumps({"group_size": 256, "is_decoder": False, "shift_tokens": True})
        raise ValueError(
            f"a lucidrains FLASHTransformer state dict does not record {missing} (its group_size, causal and "
            f"shift_tokens arguments); pass them with --model_overrides, e.g. '{example}'"
        )
    vocab, hidden = sd["token_emb.weight"].shape
    depth = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    fields = dict(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=depth,
        intermediate_size=sd["layers.0.to_hidden.0.weight"].shape[0] // 2,
        attention_key_size=sd["layers.0.to_qk.0.weight"].shape[0],
        norm_type="scalenorm" if "layers.0.norm.g" in sd else "layernorm",
        use_bias="layers.0.to_out.bias" in sd,
        linear_normalizer="group" if overrides["is_decoder"] else "valid_length",  # lucidrains' two conventions
    )  # fmt: skip
    if "layers.0.rotary_pos_emb.freqs" in sd:  # else lucidrains' min(32, query_key_dim)
        fields["rotary_dim"] = 2 * sd["layers.0.rotary_pos_emb.freqs"].shape[0]
    return from_junnyu_flash_config({}, **(fields | dict(overrides)))


def from_lucidrains_state_dict(sd: Mapping[str, Tensor], cfg: FLASHConfig) -> tuple[dict[str, Tensor], bool]:
    """(our state dict, whether it includes the LM head). lucidrains' ``to_logits`` Linear is untied and ours is
    tied, so an untied checkpoint gives the backbone only (``backbone.*`` keys, final LayerNorm included)."""
    renamed: dict[str, Tensor] = {}
    for key, value in sd.items():
        if "rotary_pos_emb" in key or key.endswith("inv_freq"):
            continue  # fixed frequencies, recomputed by our RoPE
        new = key
        for old, replacement in _LUCIDRAINS_RENAMES.items():
            new = new.replace(old, replacement) if new.startswith(old) else new
        new = "flash.encoder." + new if new.startswith("layers.") else new
        renamed[new.replace(".gamma", ".weight").replace(".beta", ".bias")] = value
    word = renamed["flash.embeddings.word_embeddings.weight"]
    tied = torch.equal(renamed["cls.predictions.decoder.weight"], word)
    renamed["cls.predictions.decoder.weight"] = word  # untied: the head is dropped below
    ours = from_junnyu_state_dict(renamed, cfg, model="flash")
    return (ours, True) if tied else ({k: v for k, v in ours.items() if k.startswith("backbone.")}, False)
