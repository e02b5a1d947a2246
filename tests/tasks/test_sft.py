"""Supervised fine-tuning of a causal LM (``tasks/sft.py``, ``data/chat_template.py``, ``generate --chat``): the loss
mask, packing boundaries (packed = one by one), bad rows, and the command line end to end on tiny models."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lmforge.cli import run
from lmforge.data.chat_template import TEMPLATE_FILE, ChatTemplate, load_chat_template
from lmforge.data.tokenizer import build_char_tokenizer, load_tokenizer
from lmforge.heads.lm import IGNORE_INDEX
from lmforge.models.registry import build_model, get_config
from lmforge.tasks.common import collate
from lmforge.tasks.sft import SFTExample, SFTModel, pack_examples, read_sft_split, segment_positions

TEXT = "系统用户助手：春夏秋冬山水花月金木火土风雨雷电你好是的写一首诗北京上海中国天气很"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sft_tokenizer")
    build_char_tokenizer([TEXT], vocab_size=200, min_frequency=1).save(path)
    return path


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


def _write(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        poem = "春夏秋冬山水花月"[i % 8 :] + "金木火土"[: 1 + i % 4]
        if i % 2:
            rows.append({"prompt": "写一首诗" + poem[:2], "response": poem})
        else:
            rows.append({"messages": [{"role": "system", "content": "你是诗人"[:1] + "是"},
                                      {"role": "user", "content": "你好"},
                                      {"role": "assistant", "content": poem}]})  # fmt: skip
    return rows


def _model(preset: str, vocab_size: int):
    torch.manual_seed(0)
    return build_model("gpt", task="clm", config=get_config("gpt", preset=preset, vocab_size=vocab_size)).eval()


# ----------------------------------------------------------------------------- template and loss mask


def test_template_masks_everything_but_the_responses(tokenizer):
    template = ChatTemplate.for_tokenizer(tokenizer)
    messages = [{"role": "system", "content": "春"}, {"role": "user", "content": "你好"},
                {"role": "assistant", "content": "山水"}, {"role": "user", "content": "天气"},
                {"role": "assistant", "content": "很好"}]  # fmt: skip
    ids, labels = template.encode(tokenizer, messages)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert (
        "".join(t if t != "[SEP]" else "|" for t in tokens) == "|系统：春|用户：你好|助手：山水|用户：天气|助手：很好|"
    )
    targets = [t for t, label in zip(tokens, labels, strict=True) if label != IGNORE_INDEX]
    assert targets == ["山", "水", "[SEP]", "很", "好", "[SEP]"]  # responses and their end-of-turn, nothing else
    assert all(label in (IGNORE_INDEX, i) for i, label in zip(ids, labels, strict=True))
    prompt, prompt_labels = template.encode(tokenizer, messages[:2], add_generation_prompt=True)
    assert tokenizer.decode(prompt).endswith("助手：") and set(prompt_labels) == {IGNORE_INDEX}
    assert template.render_text(messages[:2]) == "[SEP]系统：春[SEP]用户：你好[SEP]"


def test_template_round_trips_and_refuses_unknown_markers(tokenizer, tmp_path):
    template = ChatTemplate.for_tokenizer(tokenizer)
    template.save(tmp_path)
    assert load_chat_template(tmp_path, tokenizer) == template
    assert load_chat_template(tmp_path / "none", tokenizer) is None
    with pytest.raises(ValueError, match=r"marker .机器人. encodes to"):
        ChatTemplate.for_tokenizer(
            tokenizer, role_markers={"system": "系统：", "user": "用户：", "assistant": "机器人"}
        )
    (tmp_path / TEMPLATE_FILE).write_text(json.dumps({**template.to_dict(), "separator_id": 0}), encoding="utf-8")
    with pytest.raises(ValueError, match="template and tokenizer do not match"):
        load_chat_template(tmp_path, tokenizer)


def test_no_gradient_from_prompt_positions(tokenizer):
    template = ChatTemplate.for_tokenizer(tokenizer)
    ids, labels = template.encode(tokenizer, [{"role": "user", "content": "写一首诗"},
                                              {"role": "assistant", "content": "春山"}])  # fmt: skip
    model = SFTModel(_model("tiny", tokenizer.vocab_size), packed=True)
    batch = collate([{"input_ids": ids, "labels": labels, "token_type_ids": [1] * len(ids)}], pad_id=0)
    out = model(**batch)
    out.logits.retain_grad()
    out.loss.backward()
    grad_norm_T = out.logits.grad[0].norm(dim=-1)
    predicts_target_T = torch.tensor([*labels[1:], IGNORE_INDEX]) != IGNORE_INDEX  # position t predicts label t+1
    assert int(predicts_target_T.sum()) == 3  # 春, 山, [SEP]
    assert torch.all(grad_norm_T[~predicts_target_T] == 0) and torch.all(grad_norm_T[predicts_target_T] > 0)


# ----------------------------------------------------------------------------- packing


def _examples(tokenizer, n: int) -> list[SFTExample]:
    template = ChatTemplate.for_tokenizer(tokenizer)
    out = []
    for i, row in enumerate(_rows(n)):
        messages = row.get("messages") or [{"role": "user", "content": row["prompt"]},
                                           {"role": "assistant", "content": row["response"]}]  # fmt: skip
        out.append(SFTExample(*template.encode(tokenizer, messages), where=str(i)))
    return out


def test_pack_examples_places_every_example_once_within_the_length(tokenizer):
    examples = _examples(tokenizer, 11)
    rows = pack_examples(examples, max_length=48)
    assert len(rows) < len(examples) and all(len(r["input_ids"]) <= 48 for r in rows)
    pieces = []
    for r in rows:
        segments = r["token_type_ids"]
        assert segments == sorted(segments) and segments[0] == 1
        for k in range(1, max(segments) + 1):
            span = [i for i, s in enumerate(segments) if s == k]
            pieces.append((tuple(r["input_ids"][i] for i in span), tuple(r["labels"][i] for i in span)))
    assert sorted(pieces) == sorted((tuple(e.input_ids), tuple(e.labels)) for e in examples)
    assert segment_positions(torch.tensor([[1, 1, 1, 2, 2, 3, 0, 0]])).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1]]


def _per_example_losses(logits_TV, labels_T, segments_T) -> list[float]:
    shifted_T = F.pad(labels_T[1:], (0, 1), value=IGNORE_INDEX)
    nll_T = F.cross_entropy(logits_TV.float(), shifted_T, ignore_index=IGNORE_INDEX, reduction="none")
    return [
        float(nll_T[(segments_T == k) & (shifted_T != IGNORE_INDEX)].mean())
        for k in range(1, int(segments_T.max()) + 1)
    ]


@pytest.mark.parametrize("preset", ["tiny", "tiny-modern"])  # learned positions; RoPE, RMSNorm, SwiGLU, GQA
def test_packed_rows_give_each_example_its_own_loss(tokenizer, preset):
    examples = _examples(tokenizer, 9)
    rows = pack_examples(examples, max_length=64)
    assert max(max(r["token_type_ids"]) for r in rows) >= 3  # some row really holds several examples
    model = SFTModel(_model(preset, tokenizer.vocab_size), packed=True)
    batch = collate(rows, pad_id=tokenizer.pad_token_id)  # padded as well: rows differ in length
    with torch.no_grad():
        packed = model(**batch)
        alone = {}
        for e in examples:
            one = collate([{"input_ids": e.input_ids, "labels": e.labels}], pad_id=tokenizer.pad_token_id)
            out = model(one["input_ids"], labels=one["labels"])
            alone[tuple(e.input_ids)] = float(out.loss)
    checked = 0
    for b, row in enumerate(rows):
        n = len(row["input_ids"])
        segments_T = torch.tensor(row["token_type_ids"])
        losses = _per_example_losses(packed.logits[b, :n], batch["labels"][b, :n], segments_T)
        for k, loss in enumerate(losses, start=1):
            ids = tuple(i for i, s in zip(row["input_ids"], row["token_type_ids"], strict=True) if s == k)
            assert loss == pytest.approx(alone[ids], abs=1e-5)
            checked += 1
    assert checked == len(examples)


@pytest.mark.parametrize("arch", ["bert", "reformer"])
def test_backbones_without_packing_train_one_conversation_per_row(tokenizer, arch):
    examples = _examples(tokenizer, 3)
    rows = pack_examples(examples, max_length=64, pack=False)
    assert [r["input_ids"] for r in rows] == [e.input_ids for e in examples]
    torch.manual_seed(0)
    lm = build_model(arch, task="clm", config=get_config(arch, preset="tiny", vocab_size=tokenizer.vocab_size)).eval()
    model = SFTModel(lm, packed=False)
    assert set(model.state_dict()) == set(lm.state_dict())  # checkpoints load as a plain clm model
    batch = collate(rows, pad_id=tokenizer.pad_token_id)
    with torch.no_grad():
        expected = lm(batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        torch.testing.assert_close(model(**batch).loss, expected)


# ----------------------------------------------------------------------------- bad rows


def test_bad_rows_are_counted_with_their_first_line(tokenizer, tmp_path):
    good = _rows(2)
    path = _write(tmp_path / "train.jsonl", [
        good[0],
        {"messages": [{"role": "user", "content": "你好"}, {"role": "bot", "content": "春"}]},
        {"prompt": "你好", "response": "  "},
        {"prompt": "你好"},
        {"messages": [{"role": "user", "content": "你好"}]},
        {"messages": [{"role": "user", "content": "你好"}, {"role": "system", "content": "是"},
                      {"role": "assistant", "content": "春"}]},
        {"messages": [{"role": "user", "content": "你好"}, {"role": "robot", "content": "春"}]},
        good[1],
    ])  # fmt: skip
    template = ChatTemplate.for_tokenizer(tokenizer)
    examples, counts = read_sft_split(path, tokenizer, template, max_seq_length=64)
    assert len(examples) == counts.examples == 2 and counts.lines == 8
    assert counts.dropped == {"unknown role": 2, "empty response": 1, "missing field": 1, "no assistant turn": 1,
                              "system message not first": 1}  # fmt: skip
    assert counts.first["unknown role"] == f"{path}:2 (role 'bot'; roles are system, user, assistant)"
    assert counts.first["missing field"].startswith(f"{path}:4")
    _, short = read_sft_split(path, tokenizer, template, max_seq_length=8)  # the prompts fill 8 tokens
    assert short.dropped["no response token within --max_seq_length 8"] == 2
    _write(path, [good[0], "not json"])
    with pytest.raises(ValueError, match=f"{path}:2: not valid JSON"):
        read_sft_split(path, tokenizer, template, max_seq_length=64)


# ----------------------------------------------------------------------------- command line


def test_finetune_sft_then_chat(tokenizer_dir, tmp_path, capsys, monkeypatch):
    data = tmp_path / "sft"
    _write(data / "train.jsonl", [*_rows(24), {"messages": [{"role": "narrator", "content": "春"}]}])
    _write(data / "dev.jsonl", _rows(6))
    out = tmp_path / "run"
    common = [
        "--model",
        "gpt",
        "--model_preset",
        "tiny",
        "--tokenizer_dir",
        str(tokenizer_dir),
        "--data_dir",
        str(data),
        "--output_dir",
        str(out),
        "--max_seq_length",
        "64",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "3e-3",
        "--logging_steps",
        "2",
        "--eval_steps",
        "3",
        "--disable_tqdm",
        "true",
    ]
    report = run(["finetune", "sft", *common, "--max_steps", "6"])  # fmt: skip
    printed = capsys.readouterr().out
    assert report["packing"] and report["counts"]["train"]["dropped"] == {"unknown role": 1}
    assert "train: 24 conversations from 25 lines" in printed and "1 unknown role (first: " in printed
    assert report["rows"]["train"]["rows"] < 24 and report["dev"]["eval_loss"] > 0
    (checkpoint,) = out.glob("checkpoint-*")
    info = json.loads((checkpoint / "config.json").read_text())
    assert info["task"] == "clm" and info["finetuned"] == "sft"  # a plain causal LM for generate/export/evaluate
    assert (checkpoint / "tokenizer" / TEMPLATE_FILE).is_file()

    replies = run(["generate", str(out), "你好", "--chat", "true", "--max_new_tokens", "5"])
    assert len(replies) == 1 and capsys.readouterr().out.strip() == replies[0].strip()
    monkeypatch.setattr("sys.stdin", io.StringIO("你好\n\n写一首诗\n"))
    replies = run(["generate", str(out), "-", "--chat", "true", "--max_new_tokens", "5", "--system", "是"])
    assert len(replies) == 2


def test_export_keeps_the_template_and_chat_needs_one(tokenizer_dir, tmp_path, capsys):
    pytest.importorskip("transformers")
    data = _write(tmp_path / "sft" / "train.jsonl", _rows(8)).parent
    out = tmp_path / "run"
    run(["finetune", "sft", "--model", "gpt", "--model_preset", "tiny", "--tokenizer_dir", str(tokenizer_dir),
         "--data_dir", str(data), "--output_dir", str(out), "--max_steps", "1", "--max_seq_length", "64",
         "--disable_tqdm", "true"])  # fmt: skip
    exported = tmp_path / "hf"
    run(["export", str(out), "--output_dir", str(exported)])
    assert load_chat_template(exported, load_tokenizer(exported)) is not None  # GPT2LMHeadModel + the template
    capsys.readouterr()
    assert len(run(["generate", str(exported), "你好", "--chat", "true", "--max_new_tokens", "3"])) == 1
    (exported / TEMPLATE_FILE).unlink()
    with pytest.raises(SystemExit):
        run(["generate", str(exported), "你好", "--chat", "true"])
    assert "not fine-tuned for chat" in capsys.readouterr().err
