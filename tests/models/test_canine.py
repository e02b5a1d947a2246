"""CANINE: HF ``CanineModel`` parity (both directions, padding, lengths on and off the downsampling rate), local
attention locality, kernels, hash-bucket pretraining objective and a ``lmforge pretrain --model canine`` run."""

import dataclasses
import importlib
import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lmforge
from lmforge.data.prepare import PrepareAllArgs, prepare_all
from lmforge.models.canine.config import PRESETS, CanineConfig
from lmforge.models.canine.convert import from_hf_config, from_hf_state_dict, to_hf_config, to_hf_state_dict
from lmforge.models.canine.model import CanineModel, _local_layer
from lmforge.models.canine.pretraining import build_mlm, codepoint_targets, decode_codepoints, hash_bucket_loss
from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import pretrain
from tolerances import TOL


def _cfg(**overrides):
    return CanineConfig(**(PRESETS["tiny"] | overrides))


def _hf_model(cfg, architecture="CanineModel"):
    transformers = importlib.import_module("transformers")
    fields = to_hf_config(cfg)
    del fields["model_type"], fields["architectures"]
    return getattr(transformers, architecture)(transformers.CanineConfig(**fields)).eval()


def _batch(length, *, batch=3):  # batch >= 3
    """Codepoints anywhere in Unicode, [CLS] first; example 1 ends in padding inside its last chunk, example 2 is
    padded from position 3 on (whole local-attention chunks of padding); two segments."""
    input_ids = torch.randint(1, 0x110000, (batch, length))
    input_ids[:, 0] = 0xE000
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1, length - 5 :] = 0
    attention_mask[2, 3:] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, length // 2 :] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


@pytest.mark.hf
@pytest.mark.parametrize("length", [16, 19, 34], ids=["multiple-of-rate", "remainder-3", "remainder-2"])
def test_parity_with_transformers_both_directions(length):
    cfg = _cfg()
    theirs = _hf_model(cfg)
    ours = CanineModel(cfg).eval()
    ours.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))  # HF -> ours
    batch = _batch(length)
    with torch.no_grad():
        expected = theirs(**batch)
        actual = ours.encode(**batch)
    assert actual.sequence.shape == (3, length, cfg.hidden_size)
    # padded rows included: CANINE's convolutions carry padding into real outputs, both sides alike
    torch.testing.assert_close(actual.sequence, expected.last_hidden_state, **TOL["reference_fp32"])
    torch.testing.assert_close(actual.pooled, expected.pooler_output, **TOL["reference_fp32"])
    with torch.no_grad():  # no padding at all: our kernels run without a mask
        unpadded = batch["input_ids"][:1]
        torch.testing.assert_close(ours(unpadded), theirs(unpadded).last_hidden_state, **TOL["reference_fp32"])
    # ours -> HF: a fresh HF model loads our weights strictly and gives the same outputs
    fresh = CanineModel(cfg).eval()
    back = _hf_model(cfg)
    back.load_state_dict(to_hf_state_dict(fresh.state_dict(), cfg), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(back(**batch).last_hidden_state, fresh(**batch), **TOL["reference_fp32"])


@pytest.mark.hf
def test_all_padding_chunk_matches_hf_uniform_attention():
    """A local chunk with only padding keys: HF averages its values uniformly; without our fix-up real outputs
    next to the chunk (through the upsampling conv) would differ."""
    cfg = _cfg()
    theirs = _hf_model(cfg)
    ours = CanineModel(cfg).eval()
    ours.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))
    batch = {k: v[:1].clone() for k, v in _batch(24).items()}
    batch["attention_mask"][0, 8:] = 0  # chunks 1 and 2 (of width 8) are all padding
    with torch.no_grad():
        expected = theirs(**batch).last_hidden_state
        torch.testing.assert_close(ours(**batch), expected, **TOL["reference_fp32"])
        chars = ours.embeddings(batch["input_ids"], batch["token_type_ids"])
        local = _local_layer(ours.initial_layer, chars, batch["attention_mask"].bool(), 8)
        zero_attention = ours.initial_layer.attention_norm(chars[0, 8:] + ours.initial_layer.attention.o_proj.bias)
        assert not torch.allclose(local[0, 8:], ours.initial_layer.ffn_norm(zero_attention))


@pytest.mark.hf
def test_task_checkpoint_prefix_and_config_round_trip():
    cfg = _cfg()
    qa = _hf_model(cfg, "CanineForQuestionAnswering")
    ours = CanineModel(cfg)
    ours.load_state_dict(from_hf_state_dict(qa.state_dict(), cfg))  # "canine." stripped, qa_outputs dropped
    with pytest.raises(ValueError, match="unknown keys"):
        from_hf_state_dict(qa.state_dict(), cfg, ignore_prefixes=())
    assert from_hf_config(to_hf_config(cfg)) == cfg
    with pytest.raises(ValueError, match="num_hash_buckets"):
        to_hf_config(_cfg(max_position_embeddings=32))
    with pytest.raises(ValueError, match="not a CANINE"):
        from_hf_config({"model_type": "bert"})


@pytest.mark.hf
def test_base_preset_is_canine_s():
    transformers = importlib.import_module("transformers")
    reference = transformers.CanineConfig().to_dict()  # HF defaults = google/canine-s
    ours = to_hf_config(lmforge.get_config("canine", preset="base"))
    assert {k: v for k, v in ours.items() if k not in ("model_type", "architectures")} == {
        k: reference[k] for k in ours if k not in ("model_type", "architectures")
    }


def test_local_attention_is_block_local():
    cfg = _cfg()
    model = CanineModel(cfg).eval()
    x = torch.randn(1, 20, cfg.hidden_size)
    keep = torch.ones(1, 20, dtype=torch.bool)
    changed = x.clone()
    changed[0, 9] += 1.0  # chunk 1 (positions 8..15)
    with torch.no_grad():
        before = _local_layer(model.initial_layer, x, keep, 8)
        after = _local_layer(model.initial_layer, changed, keep, 8)
    torch.testing.assert_close(before[:, :8], after[:, :8], rtol=0, atol=0)
    torch.testing.assert_close(before[:, 16:], after[:, 16:], rtol=0, atol=0)
    assert not torch.allclose(before[:, 8:16], after[:, 8:16])


def test_sdpa_matches_eager_and_lengths_are_checked():
    cfg = _cfg()
    eager = CanineModel(dataclasses.replace(cfg, attn_implementation="eager")).eval()
    sdpa = CanineModel(cfg).eval()
    sdpa.load_state_dict(eager.state_dict())
    batch = _batch(19)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(**batch), eager(**batch), **TOL["kernel_fp32"])
    with pytest.raises(ValueError, match="characters"):
        sdpa(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="characters"):
        sdpa(torch.zeros(1, cfg.max_position_embeddings + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="num_hash_functions"):
        _cfg(num_hash_functions=5)  # 32 is not a multiple of 5


def test_final_layer_on_query_positions_only():
    """TF's final_seq_char_positions: computing only some query rows of the final layer gives those rows."""
    model = CanineModel(_cfg()).eval()
    batch = _batch(19)
    query = torch.zeros(3, 19, dtype=torch.bool)
    query[0, [1, 5, 18]] = True
    query[2, 2] = True  # example 1 has none
    with torch.no_grad():
        full = model.encode(**batch).sequence
        part = model.encode(**batch, query_mask=query).sequence
    torch.testing.assert_close(part, full[query], **TOL["batched_fp32_reshaped"])


def test_hash_bucket_loss_and_decoding():
    labels = torch.tensor([0x4E2D, 0x4E2D + 64, 97])  # 64 apart: every hash bucket collides, the quotient differs
    buckets, quotient = codepoint_targets(labels, num_hashes=4, num_buckets=64)
    assert torch.equal(buckets[0], buckets[1]) and quotient.tolist() == [(0x4E2D + 1) // 64, (0x4E2D + 65) // 64, 1]
    bucket_logits, quotient_logits = torch.randn(3, 4, 64), torch.randn(3, 0x110000 // 64 + 1)
    per_head = [F.cross_entropy(bucket_logits[:, k], buckets[:, k]) for k in range(4)]
    expected = torch.stack([*per_head, F.cross_entropy(quotient_logits, quotient)]).mean()
    torch.testing.assert_close(hash_bucket_loss(bucket_logits, quotient_logits, labels), expected)
    assert hash_bucket_loss(bucket_logits[:0], quotient_logits[:0], labels[:0]).item() == 0.0  # 0, not NaN
    # logits peaked on each label's buckets and quotient decode back to the label among many candidates
    peaked = torch.full((3, 4, 64), -5.0).scatter_(-1, buckets[..., None], 5.0)
    peaked_quotient = torch.full_like(quotient_logits, -5.0).scatter_(-1, quotient[:, None], 5.0)
    candidates = torch.cat([labels, torch.arange(0x4E00, 0x5000)]).unique()
    decoded, scores = decode_codepoints(peaked, peaked_quotient, candidates)
    assert decoded.tolist() == labels.tolist() and scores.shape == (3, candidates.numel())


def test_masked_char_model_sparse_logits_and_gradients():
    cfg = _cfg(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = build_mlm(cfg)
    batch = _batch(19)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, 4:7] = batch["input_ids"][0, 4:7]
    labels[1, 2] = batch["input_ids"][1, 2]
    dense = model(**batch, labels=labels)
    sparse = model(**batch, labels=labels, logits_at_labels_only=True)
    quotients = 0x110000 // cfg.num_hash_buckets + 1
    assert sparse.logits.shape == (4, cfg.num_hash_functions * cfg.num_hash_buckets + quotients)
    torch.testing.assert_close(sparse.loss, dense.loss)
    assert 0.0 <= sparse.metrics["char_accuracy"].item() <= 1.0
    sparse.loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith("backbone.pooler."):  # frozen: the pooled output serves classification heads
            assert parameter.grad is None and not parameter.requires_grad
            continue
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    # the decoder is tied to the hash tables: they appear once in the state dict, under the backbone
    assert not [k for k in model.state_dict() if k.startswith("head.") and "shards" in k]
    assert lmforge.build_model("canine", task="mlm", preset="tiny").config == _cfg()


def test_loop_accuracy_counts_exact_codepoint_identifications():
    """The loop's train/eval accuracy reads ``LMOutput.num_correct``: an argmax over buckets is not a codepoint."""
    from lmforge.eval.lm import count_output_predictions, count_predictions

    model = build_mlm(_cfg(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    batch = _batch(19)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, 4:7] = batch["input_ids"][0, 4:7]
    labels[1, 2] = batch["input_ids"][1, 2]
    buckets, quotient = codepoint_targets(labels[labels != -100], num_hashes=model.head.num_hashes,
                                          num_buckets=model.head.num_buckets)  # fmt: skip
    quotients = 0x110000 // model.head.num_buckets + 1
    peaked = torch.full((4, model.head.num_hashes, model.head.num_buckets), -5.0).scatter_(-1, buckets[..., None], 5.0)
    peaked_quotient = torch.full((4, quotients), -5.0).scatter_(-1, quotient[:, None], 5.0)
    peaked_quotient[1] = peaked_quotient[1].roll(1)  # one position's quotient is wrong: 3 of 4 identified
    model.head.forward = lambda hidden: (peaked, peaked_quotient)  # a head that has learnt the labels
    out = model(**batch, labels=labels, logits_at_labels_only=True)
    correct, predicted = count_output_predictions(out, labels, objective="mlm")
    assert (correct.item(), predicted.item()) == (3, 4)
    assert out.metrics["char_accuracy"].item() == 0.75
    generic, _ = count_predictions(out.logits, labels, objective="mlm")  # bucket ids vs codepoints
    assert generic.item() == 0


def _corpus(path: Path) -> None:
    rng = random.Random(0)
    chars = "天气预报说今日的很好那么我们一起去公园玩吧春风花月夜山水人家书读写看听"
    words = ["".join(rng.choice(chars) for _ in range(rng.choice((1, 2, 2, 3)))) for _ in range(40)]
    lines = ["".join(rng.choice(words) for _ in range(rng.randint(8, 25))) for _ in range(160)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_lmforge_pretrain_canine_on_raw_text(tmp_path, one_thread):
    """Codepoint shards (no vocabulary) with jieba word starts; whole-word masking; loss falls in a few steps."""
    _corpus(tmp_path / "corpus.txt")
    data = prepare_all(
        PrepareAllArgs(
            input=[str(tmp_path / "corpus.txt")],
            output_dir=str(tmp_path / "data"),
            tokenizer="codepoint",
            one_doc_per_line=True,
            max_seq_length=48,
            progress=False,
        )
    )
    args = PretrainArgs(
        model="canine",
        model_preset="tiny",
        train_dir=str(data),
        output_dir=str(tmp_path / "run"),
        max_seq_length=48,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        warmup_steps=3,
        max_steps=40,
        logging_steps=5,
        save_steps=40,
        do_eval=False,
        disable_tqdm=True,
        report_to="none",
        seed=0,
    )
    results = pretrain(args)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert results["step"] == 40 and len(losses) == 8
    assert losses[-1] < losses[0] - 0.3, losses  # ln(64) = 4.16 at the start
    assert "char_accuracy" in records[-1]
    saved = json.loads((tmp_path / "run" / "env.json").read_text())["model_config"]
    assert saved["model"] == "canine" and saved["task"] == "mlm"
