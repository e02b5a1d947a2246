"""A user's Hugging Face checkpoint, round trip through the command line: for each model_type the loader reads,
``save_pretrained`` a random model with its own tokenizer files (vocab.txt, vocab.json + merges.txt, tokenizer.json,
spiece.model; none for CANINE), then ``lmforge finetune`` on a bundled task for a few steps, ``fill-mask`` or
``generate`` on the directory, ``lmforge export`` of the fine-tuned run, and the export reloaded by plain
``transformers`` gives our fine-tuned model's logits on real text (<= 1e-5)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

from lmforge import cli
from lmforge.data.tokenizer import load_tokenizer
from lmforge.models.loading import load_model
from lmforge.tasks.common import collate, encode_texts
from lmforge.tasks.finetune import load_task_model

transformers = importlib.import_module("transformers")
tokenizers = importlib.import_module("tokenizers")
sentencepiece = importlib.import_module("sentencepiece")
REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "data" / "clue" / "lo_topic"
TEXTS = [json.loads(line)["sentence"] for line in (TASK / "train.jsonl").open(encoding="utf-8")][:400]


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """One torch thread (the CI machine has two cores shared by several jobs)."""


def _wordpiece(directory: Path) -> int:
    chars = sorted({c for text in TEXTS for c in text.lower() if not c.isspace()})
    tokens = ["[PAD]", *(f"[unused{i}]" for i in range(1, 5)), "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return len(tokens)


def _tokenizer_json(directory: Path) -> int:
    """A fast tokenizer saved by transformers (tokenizer.json + config), without the vocab.txt it came from."""
    size = _wordpiece(directory / "src")
    transformers.BertTokenizerFast(str(directory / "src" / "vocab.txt")).save_pretrained(directory)
    (directory / "vocab.txt").unlink(missing_ok=True)  # transformers 5 writes tokenizer.json only
    return size


def _gpt2_files(directory: Path) -> int:
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS, vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"])
    directory.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(directory))  # vocab.json + merges.txt, GPT-2's layout
    return bpe.get_vocab_size()


def _spiece(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXTS), model_prefix=str(directory / "spiece"), vocab_size=1200, model_type="unigram",
        character_coverage=0.995, unk_id=0, bos_id=-1, eos_id=1, pad_id=-1, minloglevel=2,
    )  # fmt: skip
    (directory / "spiece.vocab").unlink()
    return 1200


def _no_tokenizer(directory: Path) -> int:
    return 0


REFORMER = dict(
    hidden_size=32, num_attention_heads=2, attention_head_size=16, attn_layers=["local", "lsh"], feed_forward_size=48,
    local_attn_chunk_length=8, lsh_attn_chunk_length=8, num_buckets=4, hash_seed=3, axial_pos_shape=[8, 8],
    axial_pos_embds_dim=[16, 16], max_position_embeddings=64, is_decoder=True, eos_token_id=1, pad_token_id=None,
)  # fmt: skip
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
BERT = dict(model_type="bert", **SMALL, max_position_embeddings=64)
ROFORMER = dict(model_type="roformer", **SMALL, embedding_size=32, max_position_embeddings=64)
GPT2 = dict(model_type="gpt2", n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0)
LLAMA = dict(
    model_type="llama", **(SMALL | {"num_attention_heads": 4}), num_key_value_heads=2, max_position_embeddings=64,
    bos_token_id=2, eos_token_id=3, pad_token_id=0,
)  # fmt: skip
CANINE = dict(
    model_type="canine", **SMALL, max_position_embeddings=256, num_hash_functions=2, num_hash_buckets=256,
    local_transformer_stride=8,
)  # fmt: skip
# model_type -> (HF class, config fields, tokenizer writer, the command that uses the LM head)
CASES = {
    "bert": ("BertForMaskedLM", BERT, _wordpiece, "fill-mask"),
    "roformer": ("RoFormerForMaskedLM", ROFORMER, _wordpiece, "fill-mask"),
    "gpt2": ("GPT2LMHeadModel", GPT2, _gpt2_files, "generate"),
    "llama": ("LlamaForCausalLM", LLAMA, _tokenizer_json, "generate"),
    "canine": ("CanineModel", CANINE, _no_tokenizer, None),
    "reformer": ("ReformerModelWithLMHead", dict(model_type="reformer", **REFORMER), _spiece, "generate"),
}


@pytest.mark.hf
@pytest.mark.parametrize("model_type", sorted(CASES))
def test_hf_directory_round_trip(model_type: str, tmp_path: Path, capsys) -> None:
    architecture, fields, write_tokenizer, lm_command = CASES[model_type]
    source = tmp_path / model_type
    vocab_size = write_tokenizer(source)
    fields = dict(fields)
    if vocab_size:
        fields["vocab_size"] = vocab_size
    config = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)
    getattr(transformers, architecture)(config).eval().save_pretrained(source)

    run = tmp_path / "ft"
    report = cli.run([
        "finetune", "classification", "--model", str(source), "--data_dir", str(TASK), "--output_dir", str(run),
        "--max_steps", "2", "--max_train_samples", "16", "--per_device_train_batch_size", "8",
        "--max_seq_length", "32", "--do_predict", "false", "--disable_tqdm", "true", "--report_to", "none",
    ])  # fmt: skip
    assert report["steps"] == 2
    assert f"(model_type {model_type} -> lmforge" in capsys.readouterr().err
    if lm_command == "fill-mask":
        assert len(cli.run(["fill-mask", str(source), "此函数用于计算平[MASK]根。", "--top_k", "2"])[0]) == 2
    elif lm_command == "generate":
        assert len(cli.run(["generate", str(source), "此函数", "--max_new_tokens", "4"])) == 1

    exported = cli.run(["export", str(run), "--output_dir", str(tmp_path / "hf")])
    hf_config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    labels = json.loads((TASK / "labels.json").read_text(encoding="utf-8"))
    assert sorted(hf_config["id2label"].values()) == sorted(entry["label"] for entry in labels)
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(exported, trust_remote_code=True).eval()
    ours, _, checkpoint = load_task_model(run)
    tokenizer = load_tokenizer(checkpoint / "tokenizer")
    features = []
    for ids, _ in encode_texts(tokenizer, TEXTS[:3]):
        specials = [t for t in (tokenizer.cls_token_id, tokenizer.sep_token_id) if t is not None]
        features.append({"input_ids": ([specials[0]] if specials else []) + ids[:24] + specials[1:]})
    batch = collate(features, pad_id=tokenizer.pad_token_id)
    with torch.no_grad():
        expected = ours(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        got = theirs(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert load_model(exported, quiet=True).arch == report["arch"]  # and the export is a source again
