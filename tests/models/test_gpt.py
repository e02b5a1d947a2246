"""GPT: HF GPT-2 parity (logits, greedy generations, export round trip), LLaMA parity of the modern switches,
KV cache, padding, causality, kernels, init, gradients, training smoke, registry, configs and YAML recipes."""

import dataclasses
import importlib
import json
import math
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge import cli
from lmforge.generation import generate
from lmforge.models.gpt.config import PRESETS, GPTConfig
from lmforge.models.gpt.convert import (
    from_hf_config,
    from_hf_state_dict,
    from_llama_state_dict,
    to_hf_config,
    to_hf_state_dict,
)
from lmforge.models.gpt.model import GPTModel, build_clm
from lmforge.nn.init import gpt2_residual_std
from tolerances import TOL

VARIANTS = ["tiny", "tiny-modern", "tiny-moe"]
REPO = Path(__file__).resolve().parents[2]


def _cfg(preset="tiny", **overrides):
    return GPTConfig(**(PRESETS[preset] | overrides))


def _hf_gpt2(cfg):
    transformers = importlib.import_module("transformers")
    fields = to_hf_config(cfg)
    fields.pop("model_type"), fields.pop("architectures")
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**fields)).eval()


def _left_padded(vocab_size, lengths=(7, 4, 6), gen=None):
    """Prompts of different lengths, left-padded with 0, and their attention mask."""
    width = max(lengths)
    ids = torch.randint(3, vocab_size, (len(lengths), width), generator=gen)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, width - n :] = 1
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.hf
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_parity_with_hf_gpt2_both_directions(tied, tmp_path):
    cfg = _cfg(tie_word_embeddings=tied)
    theirs = _hf_gpt2(cfg)
    ours = build_clm(cfg).eval()
    ours.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))  # HF -> ours
    ids = torch.randint(0, cfg.vocab_size, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # right padding: real positions must agree
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits)
        keep = mask.bool()
        torch.testing.assert_close(ours(ids, mask).logits[keep], theirs(ids, attention_mask=mask).logits[keep])
    # ours -> HF directory -> GPT2LMHeadModel.from_pretrained -> same logits
    transformers = importlib.import_module("transformers")
    fresh = build_clm(cfg).eval()
    exported = _hf_gpt2(cfg)
    exported.load_state_dict(to_hf_state_dict(fresh.state_dict(), cfg), strict=True)
    exported.save_pretrained(tmp_path)
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, fresh(ids).logits)


@pytest.mark.hf
def test_greedy_generation_matches_hf_generate():
    cfg = _cfg(initializer_range=0.3)  # large weights: diverse continuations instead of one repeated token
    theirs = _hf_gpt2(cfg)
    ours = build_clm(cfg).eval()
    ours.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))
    ids, mask = _left_padded(cfg.vocab_size)
    expected = theirs.generate(ids, attention_mask=mask, max_new_tokens=24, do_sample=False, pad_token_id=0)
    actual = generate(ours, ids, mask, max_new_tokens=24)
    assert torch.equal(actual, expected)
    assert len(set(actual[:, -24:].flatten().tolist())) > 10  # the test has power: not one repeated token


@pytest.mark.hf
def test_modern_switches_match_hf_llama():
    """RoPE (half pairing) + RMSNorm + SwiGLU + no bias + untied head + GQA is exactly LLaMA."""
    transformers = importlib.import_module("transformers")
    cfg = _cfg("tiny-modern", initializer_range=0.3)
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.ffn_hidden_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.kv_heads, rms_norm_eps=cfg.layer_norm_epsilon, max_position_embeddings=64,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, pad_token_id=0,
    )  # fmt: skip
    theirs = transformers.LlamaForCausalLM(hf_cfg).eval()
    ours = build_clm(cfg).eval()
    ours.load_state_dict(from_llama_state_dict(theirs.state_dict(), cfg), strict=True)  # the production map
    ids, mask = _left_padded(cfg.vocab_size)
    keep = mask.bool()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask).logits[keep], theirs(ids, attention_mask=mask).logits[keep])
    expected = theirs.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False, pad_token_id=0)
    assert torch.equal(generate(ours, ids, mask, max_new_tokens=16), expected)


def test_hf_config_round_trip_and_rejections():
    cfg = _cfg(activation_function="gelu_tanh", eos_token_id=2, bos_token_id=2)
    hf = to_hf_config(cfg)
    assert hf["activation_function"] == "gelu_pytorch_tanh" and hf["n_embd"] == 32 and hf["n_inner"] is None
    assert from_hf_config(hf) == cfg
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        from_hf_config(hf | {"scale_attn_by_inverse_layer_idx": True})
    with pytest.raises(ValueError, match="position_embedding_type"):
        to_hf_config(_cfg("tiny-modern"))
    with pytest.raises(ValueError, match="num_experts"):
        to_hf_state_dict(build_clm(_cfg(num_experts=2)).state_dict(), _cfg(num_experts=2))


def test_state_dict_conversion_reports_bad_keys():
    cfg = _cfg()
    hf = to_hf_state_dict(build_clm(cfg).state_dict(), cfg)
    assert hf["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D: (in, out)
    old = hf | {
        "transformer.h.0.attn.bias": torch.ones(1, 1, 64, 64),
        "transformer.h.0.attn.masked_bias": torch.ones(1),
    }
    assert set(from_hf_state_dict(old, cfg)) == set(build_clm(cfg).state_dict())  # old mask buffers dropped
    broken = dict(hf)
    del broken["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['transformer.h.1.mlp.c_fc.bias'\]"):
        from_hf_state_dict(broken, cfg)
    with pytest.raises(ValueError, match=r"lm_head\.weight differs"):
        from_hf_state_dict(hf | {"lm_head.weight": torch.zeros(128, 32)}, cfg)


@pytest.mark.parametrize("preset", VARIANTS)
def test_cached_logits_equal_uncached(preset):
    model = build_clm(_cfg(preset)).eval()
    ids = torch.randint(0, 128, (2, 12))
    with torch.no_grad():
        full = model(ids).logits
        out = model(ids[:, :5], use_cache=True)  # prefill
        pieces, past = [out.logits], out.past_key_values
        out = model(ids[:, 5:8], past_key_values=past, use_cache=True)  # chunk: 3 queries over 8 keys
        pieces.append(out.logits)
        past = out.past_key_values
        for t in range(8, 12):  # one token at a time
            out = model(ids[:, t : t + 1], past_key_values=past, use_cache=True)
            pieces.append(out.logits)
            past = out.past_key_values
    assert past[0][0].shape == (2, model.config.kv_heads, 12, model.config.head_dim)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, **TOL["batched_fp32_reshaped"])


@pytest.mark.parametrize("preset", VARIANTS)
def test_left_padded_batch_equals_each_prompt_alone(preset):
    model = build_clm(_cfg(preset)).eval()
    ids, mask = _left_padded(128)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        batched = model(ids, mask, position_ids=positions).logits
        for i in range(ids.shape[0]):
            alone = model(ids[i : i + 1, mask[i] == 1]).logits[0]
            torch.testing.assert_close(batched[i, mask[i] == 1], alone, **TOL["batched_fp32_reshaped"])


@pytest.mark.parametrize("preset", VARIANTS)
def test_future_tokens_do_not_leak(preset):
    model = build_clm(_cfg(preset)).eval()
    ids = torch.randint(0, 128, (2, 10))
    changed = ids.clone()
    changed[:, 6:] = torch.randint(0, 128, (2, 4))
    with torch.no_grad():
        before, after = model(ids).logits, model(changed).logits
    # Exact for dense models; MoE regroups rows per expert when later tokens change routing (ULP-level noise only).
    tolerance = TOL["batched_fp32"] if preset == "tiny-moe" else dict(rtol=0, atol=0)
    torch.testing.assert_close(before[:, :6], after[:, :6], **tolerance)
    assert not torch.allclose(before[:, 6:], after[:, 6:])


@pytest.mark.parametrize("preset", VARIANTS)
def test_sdpa_equals_eager(preset):
    sdpa = build_clm(_cfg(preset)).eval()
    eager = build_clm(_cfg(preset, attn_implementation="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    ids, mask = _left_padded(128)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(ids, mask).logits, eager(ids, mask).logits, **TOL["kernel_fp32"])


def test_all_ones_mask_and_zero_token_types_are_ignored():
    model = build_clm(_cfg()).eval()
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        plain = model(ids).logits
        assert torch.equal(model(ids, torch.ones_like(ids), torch.zeros_like(ids)).logits, plain)
    with pytest.raises(ValueError, match="token_type_ids"):
        model(ids, token_type_ids=torch.ones_like(ids))


@pytest.mark.parametrize("preset", VARIANTS)
def test_every_parameter_gets_a_finite_nonzero_gradient(preset):
    model = build_clm(_cfg(preset))
    ids = torch.randint(0, 128, (4, 16))
    out = model(ids, labels=ids)
    loss = out.loss if out.aux_loss is None else out.loss + out.aux_loss
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_moe_aux_loss_and_metrics_reach_lmoutput():
    dense = build_clm(_cfg("tiny-modern"))(torch.randint(0, 128, (2, 8)))
    assert dense.aux_loss is None and dense.metrics == {}
    moe = build_clm(_cfg("tiny-moe"))
    out = moe(torch.randint(0, 128, (2, 8)))
    assert out.aux_loss.requires_grad and out.aux_loss > 0
    assert {"moe_balance_loss", "moe_z_loss", "moe_max_load"} <= set(out.metrics)
    layer = moe.backbone.layers[0].ffn
    assert len(layer.experts) == 4 and layer.top_k == 2 and layer.shared is not None


def test_init_follows_gpt2():
    cfg = _cfg(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, vocab_size=512)
    model = build_clm(cfg)
    block = model.backbone.layers[0]
    residual = gpt2_residual_std(0.02, num_layers=4)
    assert block.attention.o_proj.weight.std().item() == pytest.approx(residual, rel=0.05)
    assert block.ffn.down.weight.std().item() == pytest.approx(residual, rel=0.05)
    assert block.attention.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.ffn.up.bias.abs().sum() == 0 and torch.equal(block.attention_norm.weight, torch.ones(256))
    assert model.head.decoder.is_tied and "head.decoder.weight" not in model.state_dict()
    assert model.head.decoder._tied[0] is model.get_input_embeddings()
    # MoE: every expert's and the shared expert's down projection writes into the residual stream too.
    moe = build_clm(dataclasses.replace(cfg, num_experts=2, num_shared_experts=1)).backbone.layers[0].ffn
    for down in (moe.experts[0].down, moe.experts[1].down, moe.shared.down):
        assert down.weight.std().item() == pytest.approx(residual, rel=0.05)
    assert moe.experts[0].up.weight.std().item() == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize("preset", VARIANTS)
def test_initial_loss_is_log_vocab_and_one_batch_overfits(preset):
    model = build_clm(_cfg(preset))
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 128, (4, 16), generator=gen)
    with torch.no_grad():
        assert model(ids, labels=ids).loss.item() == pytest.approx(math.log(128), abs=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        out = model(ids, labels=ids)
        optimizer.zero_grad()
        (out.loss if out.aux_loss is None else out.loss + out.aux_loss).backward()
        optimizer.step()
    assert out.loss.item() < 0.3


def test_learned_positions_bound_the_length_but_rope_does_not():
    ids = torch.randint(0, 128, (1, 70))  # max_position_embeddings is 64
    assert build_clm(_cfg("tiny-modern"))(ids).logits.shape == (1, 70, 128)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        build_clm(_cfg())(ids)


def test_backbone_contract_and_registry():
    backbone = lmforge.build_model("gpt", preset="tiny")
    assert isinstance(backbone, GPTModel)
    ids = torch.randint(0, 128, (2, 5))
    hidden = backbone(ids, torch.ones_like(ids), None)  # the common contract: plain call -> hidden (B, T, D)
    assert isinstance(hidden, torch.Tensor) and hidden.shape == (2, 5, 32)
    assert backbone.get_input_embeddings().weight.shape == (128, 32)
    assert lmforge.build_model("gpt", task="clm", preset="tiny-moe").objective == "clm"
    for preset in PRESETS:
        assert lmforge.get_config("gpt", preset=preset).vocab_size > 0


@pytest.mark.parametrize(("preset", "millions"), [("small", 124.44), ("medium", 354.82)])
def test_preset_sizes_match_openai_gpt2(preset, millions):
    with torch.device("meta"):  # no memory, no init cost
        model = build_clm(_cfg(preset))
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.01)


def test_swiglu_width_keeps_mlp_parameter_count():
    assert _cfg("tiny-modern", hidden_size=768, num_attention_heads=12).ffn_hidden_size == 2048
    assert _cfg("tiny").ffn_hidden_size == 128


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(hidden_size=30), "divisible"),
        (dict(num_key_value_heads=3), "multiple of num_key_value_heads"),
        (dict(normalization="batchnorm"), "normalization"),
        (dict(ffn_type="geglu"), "ffn_type"),
        (dict(activation_function="gelu2"), "activation_function"),
        (dict(attn_implementation="flash9"), "attn_implementation"),
        (dict(resid_pdrop=1.0), "resid_pdrop"),
        (dict(num_experts=2, num_experts_per_tok=3), "num_experts_per_tok"),
        (dict(eos_token_id=128), "eos_token_id"),
        (dict(hidden_size=24, num_attention_heads=8, position_embedding_type="rotary"), "even head size"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        _cfg("tiny", **overrides)


@pytest.mark.parametrize("name", ["pretrain/gpt2-zh-small.yaml", "tiny/gpt-clm.yaml"])
def test_yaml_recipes_validate_through_the_cli(name):
    from lmforge.train.config import PretrainArgs

    parser = cli._stage_parser("pretrain", cli.STAGES["pretrain"])
    values = parser.parse_args(["--config", str(REPO / "configs" / name), "--train_dir", "data/x"]).as_dict()
    values.pop("config", None)
    args = cli._to_dataclass(PretrainArgs, values)
    assert args.model == "gpt" and args.objective == "clm"
    cfg = lmforge.get_config("gpt", preset=args.model_preset, **args.model_overrides)
    if name.startswith("pretrain"):
        assert (args.learning_rate, args.weight_decay, args.adam_beta2) == (6e-4, 0.1, 0.95)
        assert args.lr_scheduler_type == "cosine" and args.min_lr_ratio == 0.1 and args.warmup_steps > 0
        assert args.max_seq_length == 512 and dataclasses.asdict(cfg) == dataclasses.asdict(_cfg("small"))


def test_config_json_round_trip_through_registry():
    cfg = _cfg("tiny-moe")
    values = json.loads(json.dumps(lmforge.models.registry.config_to_dict(cfg)))
    assert lmforge.models.registry.config_from_dict("gpt", values) == cfg
