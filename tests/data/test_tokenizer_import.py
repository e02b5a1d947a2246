"""Importing published tokenizers (``tokenizer_import.py``): tiny BERT vocab.txt, GPT-2 vocab.json + merges.txt,
tokenizer.json and sentencepiece models built here, each checked id for id against its reference (transformers /
sentencepiece), through save -> load and ``AutoTokenizer``; MLM never draws a special id as a random token; the
``--tokenizer_name`` CLI paths (prepare all end to end, a hub id is one line with exit 2). No network."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import BUNDLED_CORPUS, make_documents, write_jsonl

from lmforge import cli
from lmforge.data.collate import CLMCollator, MLMCollator
from lmforge.data.masking import apply_masks
from lmforge.data.shards import check_fingerprint, open_shards
from lmforge.data.tokenizer import load_tokenizer
from lmforge.data.tokenizer_import import import_tokenizer, resolve_tokenizer_name

MIXED = "中文English混合 text，数字123 和 emoji 😀🎉 ñ Ünïcode"
EXTRA = ["  Hello,  WORLD!  naïve café ", "unbelievable tokenization 2024年3月", "北京大学的学生\n在 LibreOffice 里"]


def _corpus_lines(count: int) -> list[str]:
    lines = []
    for name in ("libreoffice_help.jsonl", "poetry.jsonl"):
        with open(BUNDLED_CORPUS / name, encoding="utf-8") as handle:
            lines += [json.loads(next(handle))["text"] for _ in range(count)]
    return lines


CORPUS = _corpus_lines(150)
TEXTS = [MIXED, *EXTRA, *(line[:300] for line in CORPUS[::30])]


# ---- building the tiny published tokenizers -------------------------------------------------------------------


def _bert_vocab() -> list[str]:
    """bert-base-chinese layout: [PAD] 0, [unusedN] 1..99, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, then
    punctuation, digits, letters, Chinese characters, ## pieces and a few English words."""
    tokens = ["[PAD]", *(f"[unused{i}]" for i in range(1, 100)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(0x21, 0x7F)] + list("，。、：；！？「」（）《》—…ñüïé")
    counts: dict[str, int] = {}
    for text in [*CORPUS, MIXED, *EXTRA]:
        for char in text:
            if "\u4e00" <= char <= "\u9fff":
                counts[char] = counts.get(char, 0) + 1
    chinese = sorted(counts, key=lambda c: (-counts[c], c))[:600]
    words = ["english", "text", "hello", "world", "emoji", "unicode", "token", "##ization", "##able", "un", "##be"]
    pieces = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + [f"##{c}" for c in chinese[:200]]
    return [*tokens, *dict.fromkeys(chars + chinese + words + pieces)]


def _write_bert(directory: Path, config: dict | None) -> Path:
    directory.mkdir(parents=True)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in _bert_vocab()), encoding="utf-8")
    if config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return _write_bert(tmp_path_factory.mktemp("bert") / "vocab", None)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    directory = tmp_path_factory.mktemp("gpt2")
    backend.model.save(str(directory))  # vocab.json + merges.txt, GPT-2 layout
    assert sorted(p.name for p in directory.iterdir()) == ["merges.txt", "vocab.json"]
    return directory


@pytest.fixture(scope="module")
def sentencepiece_model() -> bytes:
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=model,
        vocab_size=2500,
        model_type="unigram",
        character_coverage=0.9995,
        byte_fallback=True,
        minloglevel=2,
    )
    return model.getvalue()


def _assert_same_ids(ours, reference, texts=TEXTS) -> None:
    for text in texts:
        assert ours.encode(text) == reference(text), text
    batch = ours.encode_batch(texts)  # one batch == one by one, and document boundaries are right
    for i, text in enumerate(texts):
        assert batch.ids[batch.doc_tokens[i] : batch.doc_tokens[i + 1]].tolist() == ours.encode(text)


def _assert_round_trip(tokenizer, tmp_path: Path):
    from transformers import AutoTokenizer

    saved = tokenizer.save(tmp_path / "saved")
    loaded = load_tokenizer(saved)
    assert (loaded.kind, loaded.fingerprint, loaded.source) == (tokenizer.kind, tokenizer.fingerprint, tokenizer.source)
    assert loaded.special_token_ids == tokenizer.special_token_ids and loaded.vocab_size == tokenizer.vocab_size
    hf = AutoTokenizer.from_pretrained(str(saved))
    for text in TEXTS:
        assert loaded.encode(text) == tokenizer.encode(text)
        assert hf.encode(text, add_special_tokens=False) == tokenizer.encode(text), text
    return loaded, hf


# ---- vocab.txt (WordPiece) ------------------------------------------------------------------------------------

BERT_CONFIGS = {
    "no-config": None,
    "cased": {"do_lower_case": False},
    "lower-keep-accents": {"do_lower_case": True, "strip_accents": False},
    "no-chinese-split": {"tokenize_chinese_chars": False, "tokenizer_class": "BertTokenizer"},
}


@pytest.mark.parametrize("name", BERT_CONFIGS)
def test_vocab_txt_matches_bert_tokenizer(name, tmp_path):
    from transformers import BertTokenizer, BertTokenizerFast

    directory = _write_bert(tmp_path / "bert", BERT_CONFIGS[name])
    tokenizer = load_tokenizer(directory)
    assert tokenizer.kind == "wordpiece" and tokenizer.source.startswith("vocab.txt (WordPiece, ")
    assert ("cased" in tokenizer.source) == (name == "cased")
    for reference_class in (BertTokenizer, BertTokenizerFast):
        reference = reference_class.from_pretrained(str(directory))
        _assert_same_ids(tokenizer, lambda t, r=reference: r.encode(t, add_special_tokens=False))
    ids = tokenizer.special_token_ids
    assert ids == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    assert tokenizer.all_special_ids == {0, 100, 101, 102, 103} and tokenizer.random_token_range[0] == 0
    assert tokenizer.decode(tokenizer.encode("hello world")) == "hello world"
    _assert_round_trip(tokenizer, tmp_path)


def test_vocab_txt_matches_the_python_bert_tokenizer(bert_dir):
    """An independent reference: transformers' pure-Python BERT (BasicTokenizer + WordpieceTokenizer)."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    reference = BertTokenizerLegacy(str(bert_dir / "vocab.txt"))
    _assert_same_ids(load_tokenizer(bert_dir), lambda t: reference.encode(t, add_special_tokens=False))


def test_saved_vocab_txt_keeps_the_original_files(bert_dir, tmp_path):
    tokenizer = import_tokenizer(bert_dir)
    saved = tokenizer.save(tmp_path / "saved")
    assert (saved / "vocab.txt").read_bytes() == (bert_dir / "vocab.txt").read_bytes()
    config = json.loads((saved / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "BertTokenizer" and config["do_lower_case"] is True
    (saved / "vocab.txt").write_text((bert_dir / "vocab.txt").read_text(encoding="utf-8") + "新词\n", encoding="utf-8")
    with pytest.raises(ValueError, match="modified"):
        load_tokenizer(saved)


# ---- GPT-2 vocab.json + merges.txt ----------------------------------------------------------------------------


def test_gpt2_files_match_gpt2_tokenizer(gpt2_dir, tmp_path):
    from transformers import GPT2TokenizerFast

    tokenizer = load_tokenizer(gpt2_dir)
    assert tokenizer.kind == "byte_bpe" and "GPT-2 byte-level BPE" in tokenizer.source
    reference = GPT2TokenizerFast.from_pretrained(str(gpt2_dir))
    _assert_same_ids(tokenizer, lambda t: reference.encode(t, add_special_tokens=False))
    eos = reference.convert_tokens_to_ids("<|endoftext|>")
    assert tokenizer.mask_token_id is None and tokenizer.eos_token_id == eos
    assert tokenizer.pad_token_fallback == "unk" and tokenizer.pad_token_id == eos
    assert "no pad token" in tokenizer.source
    for text in TEXTS:
        assert tokenizer.decode(tokenizer.encode(text)) == text  # byte-level: exact
    _assert_round_trip(tokenizer, tmp_path)


def test_no_mask_token_fails_only_for_masked_lm(gpt2_dir):
    tokenizer = load_tokenizer(gpt2_dir)
    batch = CLMCollator(tokenizer)([tokenizer.encode("ab"), tokenizer.encode(MIXED)])
    assert batch["input_ids"][0, -1].item() == tokenizer.pad_token_id
    with pytest.raises(ValueError, match=r"masked-LM needs a mask token.*GPT-2.*--objective clm"):
        MLMCollator(tokenizer)


# ---- tokenizer.json -------------------------------------------------------------------------------------------


def test_tokenizer_json_of_a_fast_tokenizer(bert_dir, tmp_path):
    from transformers import BertTokenizerFast, PreTrainedTokenizerFast

    fast = BertTokenizerFast.from_pretrained(str(bert_dir))
    fast.add_special_tokens({"additional_special_tokens": ["<extra>"]})  # a new special id past the vocabulary
    fast.save_pretrained(str(tmp_path / "hf"))
    (tmp_path / "hf" / "vocab.txt").unlink(missing_ok=True)  # tokenizer.json alone must do
    tokenizer = load_tokenizer(tmp_path / "hf")
    assert tokenizer.kind == "hf_json" and tokenizer.source.startswith("tokenizer.json (WordPiece")
    assert tokenizer.special_token_ids == load_tokenizer(bert_dir).special_token_ids
    extra = fast.convert_tokens_to_ids("<extra>")
    assert extra == tokenizer.vocab_size - 1 and extra in tokenizer.all_special_ids
    reference = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "hf" / "tokenizer.json"))
    _assert_same_ids(tokenizer, lambda t: reference.encode(t, add_special_tokens=False))
    _assert_round_trip(tokenizer, tmp_path)


def test_bare_unigram_tokenizer_json_guesses_roles_by_spelling(tmp_path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
    trainer = trainers.UnigramTrainer(vocab_size=3000, special_tokens=specials, unk_token="<unk>", show_progress=False)
    backend.train_from_iterator(CORPUS, trainer)
    (tmp_path / "json").mkdir()
    backend.save(str(tmp_path / "json" / "tokenizer.json"))
    tokenizer = load_tokenizer(tmp_path / "json")
    assert tokenizer.special_token_ids == {"pad": 0, "unk": 1, "mask": 4, "bos": 2, "eos": 3}
    reference = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "json" / "tokenizer.json"))
    _assert_same_ids(tokenizer, lambda t: reference.encode(t, add_special_tokens=False))
    _assert_round_trip(tokenizer, tmp_path)


# ---- sentencepiece --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_name", ["spiece.model", "chinese.model"])
def test_sentencepiece_matches_the_processor(sentencepiece_model, file_name, tmp_path):
    import sentencepiece

    (tmp_path / "sp").mkdir()
    (tmp_path / "sp" / file_name).write_bytes(sentencepiece_model)
    tokenizer = load_tokenizer(tmp_path / "sp")
    assert tokenizer.kind == "sentencepiece" and tokenizer.source.startswith("sentencepiece model; no pad token")
    processor = sentencepiece.SentencePieceProcessor(model_proto=sentencepiece_model)
    _assert_same_ids(tokenizer, processor.encode)
    assert tokenizer.special_token_ids == {"unk": 0, "bos": 1, "eos": 2} and tokenizer.mask_token_id is None
    assert tokenizer.pad_token_id == 0 and tokenizer.pad_token_fallback == "unk"
    assert tokenizer.decode(tokenizer.encode(MIXED)) == processor.decode(processor.encode(MIXED))
    spans = tokenizer.encode_batch([MIXED])
    assert np.all(np.diff(spans.starts) >= 0) and np.all(spans.ends <= len(MIXED))
    _assert_round_trip(tokenizer, tmp_path)
    assert (tmp_path / "saved" / "spiece.model").read_bytes() == sentencepiece_model


def test_sentencepiece_fingerprint_hashes_the_model(sentencepiece_model, tmp_path):
    import sentencepiece

    other = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS[:100]), model_writer=other, vocab_size=2000, minloglevel=2
    )
    fingerprints = []
    for name, model in (("a", sentencepiece_model), ("b", other.getvalue())):
        (tmp_path / name).mkdir()
        (tmp_path / name / "spiece.model").write_bytes(model)
        fingerprints.append(load_tokenizer(tmp_path / name).fingerprint)
    assert fingerprints[0] != fingerprints[1]


# ---- masking with specials anywhere ---------------------------------------------------------------------------


def test_random_replacements_never_draw_special_ids(bert_dir):
    tokenizer = load_tokenizer(bert_dir)
    specials = sorted(tokenizer.all_special_ids)
    ids_BT = torch.full((64, 512), 2000)
    generator = torch.Generator().manual_seed(0)
    inputs_BT, _ = apply_masks(
        ids_BT,
        selected_BT=torch.ones_like(ids_BT, dtype=torch.bool),
        action_BT=torch.full(ids_BT.shape, 0.85),  # every position takes the "random token" branch
        mask_token_id=tokenizer.mask_token_id,
        random_range=tokenizer.random_token_range,
        generator=generator,
        exclude_ids=specials,
    )
    drawn = torch.bincount(inputs_BT.flatten(), minlength=tokenizer.vocab_size)
    assert drawn[specials].sum() == 0
    others = np.setdiff1d(np.arange(tokenizer.vocab_size), specials)
    assert (drawn[others] > 0).all()  # every other id is reachable ([unusedN] included: they are not special)

    encoded = [[tokenizer.cls_token_id, *tokenizer.encode(t), tokenizer.sep_token_id] for t in CORPUS[:64]]
    collator = MLMCollator(tokenizer, mlm_probability=0.5, mode="token", max_seq_length=256)
    for seed in range(4):
        batch = collator(encoded, torch.Generator().manual_seed(seed))
        chosen = batch["labels"] != -100
        replaced = chosen & (batch["input_ids"] != batch["labels"]) & (batch["input_ids"] != tokenizer.mask_token_id)
        assert replaced.any() and not torch.isin(batch["input_ids"][replaced], torch.tensor(specials)).any()
        assert not torch.isin(batch["labels"][chosen], torch.tensor(specials)).any()


# ---- the CLI: --tokenizer_name --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared_with_bert(bert_dir, tmp_path_factory) -> tuple[Path, str]:
    """``lmforge prepare all --tokenizer_name BERT_DIR`` on a small input; (output dir, what it printed)."""
    root = tmp_path_factory.mktemp("prepared_bert")
    write_jsonl(root / "raw" / "docs.jsonl", make_documents(40))
    out = root / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.run(
            ["prepare", "all", "--input", str(root / "raw"), "--output_dir", str(out), "--tokenizer_name",
             str(bert_dir), "--max_seq_length", "32", "--min_doc_length", "1", "--segmenter", "none",
             "--progress", "false"]
        )  # fmt: skip
    return out, printed.getvalue()


def test_prepare_all_with_tokenizer_name(bert_dir, prepared_with_bert):
    out, printed = prepared_with_bert
    assert "tokenizer: imported vocab.txt (WordPiece, lowercase)" in printed
    imported = load_tokenizer(bert_dir)
    saved = load_tokenizer(out / "tokenizer")
    assert saved.fingerprint == imported.fingerprint and (out / "tokenizer" / "vocab.txt").is_file()
    shards = open_shards(out / "shards" / "train")
    check_fingerprint(shards, imported)
    first = shards.tokens(*shards.document_span(0)).tolist()
    assert first and max(first) < imported.vocab_size


def test_tokenizer_name_that_is_not_a_local_directory_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["prepare", "all", "--input", str(tmp_path), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        cli.run([*argv, "--tokenizer_name", "junnyu/roformer_chinese_char_base"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "not a local directory" in err and "downloads nothing" in err and not (tmp_path / "out").exists()
    _write_bert(tmp_path / "junnyu" / "roformer_chinese_char_base", {"tokenizer_class": "RoFormerTokenizer"})
    assert resolve_tokenizer_name("junnyu/roformer_chinese_char_base").is_dir()  # a relative local path works
    tokenizer = load_tokenizer("junnyu/roformer_chinese_char_base")
    assert "RoFormerTokenizer read as BertTokenizer" in tokenizer.source


def test_prepare_mlm_with_a_tokenizer_without_mask_is_one_line(gpt2_dir, tmp_path, capsys):
    write_jsonl(tmp_path / "raw" / "docs.jsonl", make_documents(5))
    with pytest.raises(SystemExit) as exit_info:
        cli.run(["prepare", "all", "--input", str(tmp_path / "raw"), "--output_dir", str(tmp_path / "out"),
                 "--tokenizer_name", str(gpt2_dir)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "mask token" in err


def test_pretrain_tokenizer_name_errors_are_one_line(prepared_with_bert, gpt2_dir, tmp_path, capsys):
    out, _ = prepared_with_bert
    argv = ["pretrain", "--model", "bert", "--model_preset", "tiny", "--train_dir", str(out), "--output_dir"]
    argv += [str(tmp_path / "run"), "--tokenizer_name"]
    for name, message in [
        ("junnyu/roformer_chinese_char_base", "not a local directory"),
        (str(gpt2_dir), f"built with tokenizer {load_tokenizer(out / 'tokenizer').fingerprint}"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.run([*argv, name])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err
    assert load_tokenizer(gpt2_dir).fingerprint in err


def test_pretrain_with_an_imported_tokenizer_checkpoints_only_its_files(prepared_with_bert, bert_dir, tmp_path):
    from transformers import AutoTokenizer

    from lmforge.train.checkpoint import find_latest_checkpoint
    from lmforge.train.config import PretrainArgs
    from lmforge.train.pretrain import pretrain

    out, _ = prepared_with_bert
    model_dir = tmp_path / "roformer_chinese_char_base"  # a downloaded model directory: weights beside the vocab
    shutil.copytree(bert_dir, model_dir)
    (model_dir / "pytorch_model.bin").write_bytes(b"\0" * 1024)
    run = tmp_path / "run"
    pretrain(
        PretrainArgs(
            train_dir=str(out),
            output_dir=str(run),
            tokenizer_name=str(model_dir),
            model="bert",
            model_preset="tiny",
            max_steps=1,
            save_steps=1,
            max_seq_length=32,
            per_device_train_batch_size=2,
            do_eval=False,
            disable_tqdm=True,
            report_to="none",
        )
    )
    saved = find_latest_checkpoint(run) / "tokenizer"
    assert not (saved / "pytorch_model.bin").exists() and (saved / "vocab.txt").is_file()
    assert load_tokenizer(saved).fingerprint == load_tokenizer(model_dir).fingerprint
    assert AutoTokenizer.from_pretrained(str(saved)).encode(MIXED, add_special_tokens=False) == load_tokenizer(
        model_dir
    ).encode(MIXED)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"tokenizer.json": b"{not json"}, r"cannot read .*tokenizer\.json"),
        ({"vocab.txt": b"\x80\x81\n"}, "not valid UTF-8"),
        ({"vocab.txt": b"a\nb\n"}, r"no unknown token '\[UNK\]'"),
        ({"vocab.txt": b"[UNK]\n", "tokenizer_config.json": b'{"do_lower_case": "yes"}'}, "do_lower_case must be"),
        ({"vocab.txt": b"[UNK]\n", "tokenizer_config.json": b"[1]"}, "must hold a JSON object"),
        ({"vocab.json": b"{}", "merges.txt": b"a b\n"}, r"cannot read .*merges\.txt"),
        ({"spiece.model": b"garbage"}, "cannot read .* as a sentencepiece model"),
        ({"a.model": b"x", "b.model": b"y"}, "several sentencepiece models"),
        ({"notes.txt": b"hello"}, r"lmforge_tokenizer\.json is missing and it is no Hugging Face tokenizer"),
    ],
)
def test_broken_tokenizer_directories_are_one_line_value_errors(files, message, tmp_path):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=message) as error:
        load_tokenizer(tmp_path)
    assert "\n" not in str(error.value)


def test_sentencepiece_lone_surrogate_is_a_value_error(sentencepiece_model, tmp_path):
    (tmp_path / "spiece.model").write_bytes(sentencepiece_model)
    with pytest.raises(ValueError, match="lone surrogate"):
        load_tokenizer(tmp_path).encode("a\ud800b")


def test_prepare_tokenizer_and_clm_shards_with_tokenizer_name(prepared_with_bert, gpt2_dir, tmp_path, capsys):
    out, _ = prepared_with_bert
    cli.run(["prepare", "tokenizer", "--tokenizer_name", str(gpt2_dir), "--output_dir", str(tmp_path / "tok")])
    assert "tokenizer: imported vocab.json + merges.txt (GPT-2 byte-level BPE)" in capsys.readouterr().out
    imported = load_tokenizer(gpt2_dir)
    assert load_tokenizer(tmp_path / "tok").fingerprint == imported.fingerprint
    cli.run(["prepare", "shards", "--input", str(out / "corpus"), "--tokenizer_name", str(gpt2_dir), "--output_dir",
             str(tmp_path / "shards"), "--objective", "clm", "--block_size", "64", "--segmenter", "none",
             "--progress", "false"])  # fmt: skip
    shards = open_shards(tmp_path / "shards" / "train")
    check_fingerprint(shards, imported)
    assert shards.separator_id == imported.eos_token_id
    with pytest.raises(SystemExit) as exit_info:  # mlm shards need a mask token
        cli.run(["prepare", "shards", "--input", str(out / "corpus"), "--tokenizer_name", str(gpt2_dir),
                 "--output_dir", str(tmp_path / "mlm")])  # fmt: skip
    assert exit_info.value.code == 2 and "mask token" in capsys.readouterr().err


def test_vocab_txt_with_added_tokens_in_the_config(tmp_path):
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##b", "中", "文"]
    (tmp_path / "vocab.txt").write_text("".join(v + "\n" for v in vocab), encoding="utf-8")
    added = {"10": {"content": "新词", "special": False}, "11": {"content": "<tag>", "special": True}}
    config = {"tokenizer_class": "BertTokenizer", "added_tokens_decoder": added}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    tokenizer = load_tokenizer(tmp_path)
    reference = BertTokenizer.from_pretrained(str(tmp_path))
    _assert_same_ids(tokenizer, lambda t: reference.encode(t, add_special_tokens=False), ["ab 新词中文 a", "中新词b"])
    assert tokenizer.vocab_size == len(reference) == 12 and 11 in tokenizer.all_special_ids
    assert tokenizer.encode("<tag>") == [1, 1, 1]  # text spelling a special stays text (lmforge's deviation)
