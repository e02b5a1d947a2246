"""Reformer: HF parity (local, LSH, mixed, 1-2 hash rounds, causal and MLM, padding), reversible == stored
gradients, chunked FFN, causality, padding, axial lengths, half precision, gradients, registry, pretraining and
the HF export round trip."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.hf.export import export_checkpoint
from lmforge.models.reformer.config import PRESETS, ReformerConfig
from lmforge.models.reformer.convert import from_hf_config, from_hf_state_dict, to_hf_config, to_hf_state_dict
from lmforge.models.reformer.model import build_clm, build_mlm
from lmforge.nn.axial import AxialPositionEmbeddings
from lmforge.train.checkpoint import load_model
from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import pretrain
from tolerances import TOL

transformers = importlib.import_module("transformers")
_spec = importlib.util.spec_from_file_location("tiny_data", Path(__file__).parents[1] / "train" / "tiny_data.py")
tiny_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_data)


def _cfg(**overrides) -> ReformerConfig:
    fields = dict(
        vocab_size=60, hidden_size=32, num_attention_heads=2, attention_head_size=16, attn_layers=("local", "lsh"),
        feed_forward_size=48, local_attn_chunk_length=8, lsh_attn_chunk_length=8, num_buckets=4, hash_seed=3,
        axial_pos_shape=(8, 8), axial_pos_embds_dim=(16, 16), max_position_embeddings=64, is_decoder=True,
        hidden_dropout_prob=0.0, local_attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return ReformerConfig(**(fields | overrides))


def _hf(cfg: ReformerConfig):
    fields = to_hf_config(cfg)
    architecture = fields.pop("architectures")[0]
    fields.pop("model_type")
    return getattr(transformers, architecture)(transformers.ReformerConfig(**fields))


def _pair(cfg: ReformerConfig):
    theirs = _hf(cfg).eval()
    ours = (build_clm if cfg.is_decoder else build_mlm)(cfg).eval()
    ours.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))
    return ours, theirs


CASES = {
    "local": dict(attn_layers=("local", "local")),
    "lsh": dict(attn_layers=("lsh", "lsh")),
    "mixed": dict(attn_layers=("local", "lsh", "lsh")),
    "mixed-2-rounds": dict(attn_layers=("lsh", "local"), num_hashes=2),
    "factorised-buckets-2-rounds": dict(attn_layers=("lsh",), num_hashes=2, num_buckets=(2, 4)),
    "learned-positions": dict(axial_pos_embds=False, attn_layers=("lsh", "local")),
    "mlm-2-rounds": dict(is_decoder=False, lsh_num_chunks_after=1, local_num_chunks_after=1, num_hashes=2),
}


@pytest.mark.hf
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("length", [40, 36, 6])  # chunk multiple; padded by both models (eval); one chunk
def test_logits_match_hf(case: str, length: int) -> None:
    ours, theirs = _pair(_cfg(**CASES[case]))
    ids = torch.randint(1, 60, (2, length))
    torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, **TOL["reference_fp32"])


@pytest.mark.hf
@pytest.mark.parametrize("case", ["mixed-2-rounds", "mlm-2-rounds"])
def test_logits_match_hf_with_padding_mask(case: str) -> None:
    ours, theirs = _pair(_cfg(**CASES[case]))
    ids = torch.randint(1, 60, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 33:] = 0  # pad tokens get their own bucket
    keep = mask.bool()
    got, want = ours(ids, attention_mask=mask).logits, theirs(ids, attention_mask=mask).logits
    torch.testing.assert_close(got[keep], want[keep], **TOL["reference_fp32"])


@pytest.mark.hf
def test_state_dict_and_config_round_trip() -> None:
    cfg = _cfg(num_buckets=(2, 4), num_hashes=2)
    theirs = _hf(cfg)
    ours = from_hf_state_dict(theirs.state_dict(), cfg)
    back = to_hf_state_dict(ours, cfg)
    assert set(back) == set(theirs.state_dict())
    assert all(torch.equal(back[k], v) for k, v in theirs.state_dict().items())
    hf_dict = theirs.config.to_dict()
    assert from_hf_config(hf_dict) == cfg
    with pytest.raises(ValueError, match="missing keys"):
        from_hf_state_dict({k: v for k, v in theirs.state_dict().items() if "lm_head.decoder.weight" not in k}, cfg)


_DROPOUTS = dict(hidden_dropout_prob=0.1, local_attention_probs_dropout_prob=0.1, lsh_attention_probs_dropout_prob=0.1)


def _loss_and_grads(model, ids, seed=7):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the dropout masks and the fresh LSH rotations
    loss = model(ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("num_hashes", [1, 2])
def test_reversible_gradients_equal_stored_activations(num_hashes: int) -> None:
    """Dropout everywhere and fresh rotations (no hash_seed): equal only if RNG and buckets are replayed."""
    cfg = _cfg(attn_layers=("lsh", "local", "lsh"), num_hashes=num_hashes, hash_seed=None, **_DROPOUTS)
    stored = build_clm(dataclasses.replace(cfg, use_reversible=False)).train()
    reversible = build_clm(cfg).train()
    reversible.load_state_dict(stored.state_dict())
    ids = torch.randint(1, 60, (2, 32))
    loss_s, grads_s = _loss_and_grads(stored, ids)
    loss_r, grads_r = _loss_and_grads(reversible, ids)
    torch.testing.assert_close(loss_r, loss_s, rtol=0, atol=0)
    for name, grad in grads_s.items():
        torch.testing.assert_close(grads_r[name], grad, **TOL["batched_fp32_reshaped"], msg=name)


def test_chunked_feed_forward_equals_unchunked() -> None:
    cfg = _cfg(attn_layers=("lsh", "local"), num_hashes=2)
    whole = build_clm(cfg).train()
    chunked = build_clm(dataclasses.replace(cfg, chunk_size_feed_forward=5)).train()
    chunked.load_state_dict(whole.state_dict())
    ids = torch.randint(1, 60, (2, 32))
    loss_w, grads_w = _loss_and_grads(whole, ids)
    loss_c, grads_c = _loss_and_grads(chunked, ids)
    torch.testing.assert_close(loss_c, loss_w, **TOL["kernel_fp32"])
    for name, grad in grads_w.items():
        torch.testing.assert_close(grads_c[name], grad, **TOL["batched_fp32_reshaped"], msg=name)


@pytest.mark.parametrize("use_reversible", [True, False])
def test_no_causal_leakage(use_reversible: bool) -> None:
    """d logits[t] / d embeddings[s] = 0 for s > t (LSH buckets depend on the future, never the values)."""
    model = build_clm(_cfg(attn_layers=("lsh", "local", "lsh"), num_hashes=2, use_reversible=use_reversible))
    model.train()
    captured = {}
    hook = model.backbone.embeddings.register_forward_hook(lambda m, i, out: captured.setdefault("x", out))
    ids = torch.randint(1, 60, (1, 32))
    logits = model(ids).logits
    hook.remove()
    for t in (3, 17, 30):
        (grad,) = torch.autograd.grad(logits[0, t].sum(), captured["x"], retain_graph=True)
        assert grad[0, t + 1 :].abs().max() == 0 and grad[0, t].abs().max() > 0


def test_local_model_is_causal_and_padding_invariant() -> None:
    model = build_clm(_cfg(attn_layers=("local", "local"))).eval()
    ids = torch.randint(1, 60, (1, 24))
    changed = ids.clone()
    changed[:, 13:] = torch.randint(1, 60, (1, 11))
    torch.testing.assert_close(model(changed).logits[:, :13], model(ids).logits[:, :13], rtol=0, atol=0)
    # appended padding (masked) leaves the real positions alone; automatic padding is removed from the output
    padded = torch.cat([ids, torch.zeros(1, 9, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 24), torch.zeros(1, 9)], dim=1).long()
    out = model(padded, attention_mask=mask).logits
    assert out.shape == (1, 33, 60)
    torch.testing.assert_close(out[:, :24], model(ids).logits, **TOL["batched_fp32"])


def test_training_pads_to_the_chunk_multiple_and_every_parameter_learns() -> None:
    model = build_clm(_cfg(attn_layers=("lsh", "local"), num_hashes=2, hash_seed=None)).train()
    ids = torch.randint(1, 60, (2, 21))  # not a multiple of 8: HF raises in training, we pad and cut
    out = model(ids, labels=ids)
    assert out.logits.shape == (2, 21, 60)
    out.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    model.eval()  # reversible backward also works in eval mode (HF asserts training, transformers #10370)
    model(ids, labels=ids).loss.backward()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward_is_finite(dtype: torch.dtype) -> None:
    model = build_clm(_cfg(attn_layers=("lsh", "local"), num_hashes=2)).to(dtype).eval()
    ids = torch.randint(1, 60, (2, 37))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    logits = model(ids, attention_mask=mask).logits
    assert logits.dtype == dtype and torch.isfinite(logits).all()


def test_axial_positions_accept_any_length_up_to_the_table() -> None:
    axial = AxialPositionEmbeddings((4, 8), (3, 5)).train()
    full = axial(32)
    torch.testing.assert_close(axial(11), full[:11], rtol=0, atol=0)  # training too: no prod(shape) == T rule
    assert torch.equal(full[9, :3], axial.weights[0][1, 0]) and torch.equal(full[9, 3:], axial.weights[1][0, 1])
    torch.testing.assert_close(axial(3, positions=torch.tensor([[5, 30, 1]])), full[[5, 30, 1]][None])
    with pytest.raises(ValueError, match="exceed the axial table"):
        axial(33)
    for outside in (32, -1):  # explicit positions outside the table would wrap around the first axis
        with pytest.raises(ValueError, match=r"positions must lie in \[0, 32\)"):
            axial(2, positions=torch.tensor([[0, outside]]))
    model = build_clm(_cfg())
    with pytest.raises(ValueError, match="exceed max_position_embeddings"):
        model(torch.randint(1, 60, (1, 65)))


def test_config_errors_and_presets() -> None:
    with pytest.raises(ValueError, match="even"):
        _cfg(num_buckets=5)
    with pytest.raises(ValueError, match="sum to hidden_size"):
        _cfg(axial_pos_embds_dim=(16, 8))
    with pytest.raises(ValueError, match="fewer than max_position_embeddings"):
        _cfg(max_position_embeddings=128)
    with pytest.raises(ValueError, match="attn_layers"):
        _cfg(attn_layers=("lsh", "full"))
    with pytest.raises(ValueError, match="num_chunks_after"):
        _cfg(lsh_num_chunks_after=1)
    for name in PRESETS:
        cfg = lmforge.get_config("reformer", preset=name)
        assert cfg.num_hidden_layers == len(cfg.attn_layers)
    assert lmforge.get_config("reformer", preset="crime-and-punishment").max_position_embeddings == 512 * 1024
    with pytest.raises(ValueError, match="bidirectional"):
        lmforge.build_model("reformer", task="mlm", preset="crime-and-punishment")


def test_sdpa_kernel_matches_eager_model() -> None:
    cfg = _cfg(attn_layers=("local", "lsh"))
    eager = build_clm(cfg).eval()
    fused = build_clm(dataclasses.replace(cfg, attn_implementation="sdpa")).eval()
    fused.load_state_dict(eager.state_dict())
    ids = torch.randint(1, 60, (2, 37))
    torch.testing.assert_close(fused(ids).logits, eager(ids).logits, **TOL["kernel_fp32"])


@pytest.mark.hf
def test_pretrain_and_export_round_trip(tmp_path: Path, one_thread: None) -> None:
    data = tiny_data.make_data(tmp_path / "data", objective="clm", sequence_length=24)
    run = tmp_path / "run"
    args = dict(
        train_dir=str(data), output_dir=str(run), model="reformer", model_preset="tiny", objective="clm",
        max_seq_length=24, per_device_train_batch_size=4, max_steps=3, save_steps=3, logging_steps=1,
        learning_rate=1e-3, max_eval_samples=8, disable_tqdm=True, report_to="none",
    )  # fmt: skip
    result = pretrain(PretrainArgs(**args))
    assert result["step"] == 3
    out = export_checkpoint(run, tmp_path / "hf")  # verifies the logits itself (12 tokens: one chunk)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["ReformerModelWithLMHead"] and config["model_type"] == "reformer"
    ours = load_model(run).eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    for layer in ours.backbone.layers:  # fixed rotations on both sides for a length above one chunk
        if hasattr(layer.attention.attention, "hash_seed"):
            layer.attention.attention.hash_seed = 0
    for layer in theirs.reformer.encoder.layers:
        if hasattr(layer.attention.self_attention, "hash_seed"):
            layer.attention.self_attention.hash_seed = 0
    ids = torch.randint(1, ours.config.vocab_size, (2, 40))
    torch.testing.assert_close(theirs(ids).logits, ours(ids).logits, **TOL["reference_fp32"])


@pytest.mark.gpu
def test_reversible_gradients_equal_stored_activations_on_gpu() -> None:
    """The CUDA RNG state is captured and replayed too (dropout masks are drawn on the device)."""
    assert torch.cuda.is_available(), "gpu-marked tests need CUDA: select them with -m gpu on a GPU machine only"
    cfg = _cfg(attn_layers=("lsh", "local", "lsh"), num_hashes=2, hash_seed=None, **_DROPOUTS)
    stored = build_clm(dataclasses.replace(cfg, use_reversible=False)).cuda().train()
    reversible = build_clm(cfg).cuda().train()
    reversible.load_state_dict(stored.state_dict())
    ids = torch.randint(1, 60, (2, 32), device="cuda")
    loss_s, grads_s = _loss_and_grads(stored, ids)
    loss_r, grads_r = _loss_and_grads(reversible, ids)
    torch.testing.assert_close(loss_r, loss_s, rtol=0, atol=0)
    for name, grad in grads_s.items():
        torch.testing.assert_close(grads_r[name], grad, **TOL["batched_fp32_reshaped"], msg=name)
