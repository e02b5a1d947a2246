"""``lmforge.models.loading``: every source a command takes resolves to the right model with the reference's
outputs (HF directories written by ``save_pretrained``, JunnYu layouts, lucidrains files), in the documented order,
with one line saying what was chosen; conflicting or bad input is one line + exit 2 and runs nothing."""

from __future__ import annotations

import dataclasses
import importlib
import json
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lmforge
from lmforge import cli
from lmforge.data.tokenizer import build_char_tokenizer
from lmforge.models.bert.config import PRESETS as BERT_PRESETS
from lmforge.models.bert.config import BertConfig
from lmforge.models.canine.config import PRESETS as CANINE_PRESETS
from lmforge.models.canine.config import CanineConfig
from lmforge.models.flash.convert import from_junnyu_flash_config, from_junnyu_quad_config
from lmforge.models.flash.convert import to_junnyu_state_dict as to_junnyu_flash
from lmforge.models.gau_alpha.convert import to_junnyu_state_dict
from lmforge.models.gpt.config import PRESETS as GPT_PRESETS
from lmforge.models.gpt.config import GPTConfig
from lmforge.models.loading import load_model
from lmforge.models.reformer.config import ReformerConfig
from lmforge.train.checkpoint import save_checkpoint
from models.test_flash import QUAD_JUNNYU, _junnyu_quad_logits, _random_junnyu_quad
from models.test_gau_alpha import _config as gau_alpha_config
from tolerances import TOL

transformers = importlib.import_module("transformers")
_spec = importlib.util.spec_from_file_location("tiny_data", Path(__file__).parents[1] / "train" / "tiny_data.py")
tiny_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_data)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """One torch thread (the CI machine has two cores shared by several jobs)."""


def _convert(arch: str):
    return importlib.import_module(f"lmforge.models.{arch}.convert")


def _hf_model(fields: dict, architecture: str, *, seed: int = 0):
    """An HF model of ``architecture`` with random weights (biases and norms moved off their 0/1 init)."""
    fields = dict(fields)
    model_type = fields.pop("model_type")
    fields.pop("architectures", None)
    model = getattr(transformers, architecture)(transformers.AutoConfig.for_model(model_type, **fields))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:  # RoFormer's frozen sinusoid table stays the formula
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=gen))
    return model.eval()


def _save(model, directory: Path) -> Path:
    model.save_pretrained(directory)
    return directory


REFORMER = ReformerConfig(
    vocab_size=60, hidden_size=32, num_attention_heads=2, attention_head_size=16, attn_layers=("local", "lsh"),
    feed_forward_size=48, local_attn_chunk_length=8, lsh_attn_chunk_length=8, num_buckets=4, hash_seed=3,
    axial_pos_shape=(8, 8), axial_pos_embds_dim=(16, 16), max_position_embeddings=64, is_decoder=True,
    hidden_dropout_prob=0.0, local_attention_probs_dropout_prob=0.0,
)  # fmt: skip
# name -> (HF config fields, HF architecture, the task the loader must report)
BERT_TINY = BertConfig(**BERT_PRESETS["tiny"])
ROFORMER_TINY = BertConfig(**BERT_PRESETS["roformer-tiny"])
GPT_TINY = GPTConfig(**(GPT_PRESETS["tiny"] | {"bos_token_id": 1, "eos_token_id": 2}))
CASES = {
    "bert-mlm": (_convert("bert").to_hf_config(BERT_TINY), "BertForMaskedLM", "mlm"),
    "bert-clm": (
        _convert("bert").to_hf_config(dataclasses.replace(BERT_TINY, is_decoder=True)),
        "BertLMHeadModel",
        "clm",
    ),
    "roformer-mlm": (_convert("bert").to_hf_config(ROFORMER_TINY), "RoFormerForMaskedLM", "mlm"),
    "gpt2-clm": (_convert("gpt").to_hf_config(GPT_TINY), "GPT2LMHeadModel", "clm"),
    "reformer-clm": (_convert("reformer").to_hf_config(REFORMER), "ReformerModelWithLMHead", "clm"),
    "reformer-mlm": (
        _convert("reformer").to_hf_config(
            dataclasses.replace(REFORMER, is_decoder=False, lsh_num_chunks_after=1, local_num_chunks_after=1)
        ),
        "ReformerForMaskedLM",
        "mlm",
    ),
    "llama-clm": (
        dict(
            model_type="llama",
            vocab_size=99,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            rms_norm_eps=1e-6,
            max_position_embeddings=64,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        ),
        "LlamaForCausalLM",
        "clm",
    ),
}


def _ids(vocab_size: int, length: int = 16) -> dict:
    ids = torch.randint(1, vocab_size, (2, length), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    return dict(input_ids=ids, attention_mask=mask)


@pytest.mark.hf
@pytest.mark.parametrize("case", sorted(CASES))
def test_hf_directory_logits_equal_transformers(case: str, tmp_path: Path, capsys) -> None:
    fields, architecture, task = CASES[case]
    theirs = _hf_model(fields, architecture)
    _save(theirs, tmp_path / case)
    capsys.readouterr()  # save_pretrained's progress bar
    loaded = load_model(tmp_path / case)
    model_type = fields["model_type"]
    assert loaded.task == task and loaded.tokenizer_dir is None
    line = capsys.readouterr().err.strip()
    assert line == (
        f"model: Hugging Face directory {tmp_path / case} (model_type {model_type} -> lmforge {loaded.arch}, "
        f"{architecture} weights)"
    )
    batch = _ids(fields["vocab_size"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**batch).logits, theirs(**batch).logits)


@pytest.mark.hf
@pytest.mark.parametrize(
    ("model_type", "architecture", "inner"),
    [
        ("bert", "BertModel", None),
        ("bert", "BertForSequenceClassification", "bert"),
        ("roformer", "RoFormerForTokenClassification", "roformer"),
        ("bert", "BertForQuestionAnswering", "bert"),
        ("gpt2", "GPT2ForSequenceClassification", "transformer"),
        ("reformer", "ReformerModel", None),
        ("canine", "CanineModel", None),
        ("canine", "CanineForSequenceClassification", "canine"),
    ],
)
def test_backbones_and_finetuned_heads_give_the_backbone(model_type, architecture, inner, tmp_path: Path) -> None:
    fields = {
        "bert": CASES["bert-mlm"][0],
        "roformer": CASES["roformer-mlm"][0],
        "gpt2": CASES["gpt2-clm"][0],
        "reformer": CASES["reformer-clm"][0],
        "canine": _convert("canine").to_hf_config(CanineConfig(**CANINE_PRESETS["tiny"])),
    }[model_type]
    theirs = _hf_model(fields, architecture)
    loaded = load_model(_save(theirs, tmp_path / "hf"))
    assert loaded.task == "backbone" and "backbone only" in loaded.description
    batch = _ids(fields.get("vocab_size", 0x10000))
    with torch.no_grad():
        expected = (getattr(theirs, inner) if inner else theirs)(**batch).last_hidden_state
        actual = loaded.model(**batch)
    torch.testing.assert_close(actual, expected)
    if model_type == "canine":  # no tokenizer files: CANINE reads codepoints
        assert loaded.load_tokenizer().kind == "codepoint"


@pytest.mark.hf
def test_reformer_after_an_hf_training_step_takes_the_decoder_bias(tmp_path: Path) -> None:
    """transformers 5: ``lm_head.bias`` is a separate parameter the forward never uses; after a step it differs
    from ``lm_head.decoder.bias`` and the converter must take the latter."""
    theirs = _hf_model(CASES["reformer-clm"][0], "ReformerModelWithLMHead").train()
    optimizer = torch.optim.AdamW(theirs.parameters(), lr=1e-2)
    ids = torch.randint(1, REFORMER.vocab_size, (2, 64), generator=torch.Generator().manual_seed(0))
    theirs(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    theirs.eval()
    assert not torch.equal(theirs.lm_head.bias, theirs.lm_head.decoder.bias)
    loaded = load_model(_save(theirs, tmp_path / "reformer"))
    batch = _ids(REFORMER.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**batch).logits, theirs(**batch).logits)


def test_junnyu_gau_alpha_and_flash_quad_directories(tmp_path: Path) -> None:
    cfg = gau_alpha_config()
    ours = lmforge.build_model("gau-alpha", task="mlm", config=cfg).eval()
    gau = tmp_path / "gau"
    gau.mkdir()
    port = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                intermediate_size=cfg.intermediate_size, attention_key_size=cfg.attention_key_size,
                hidden_act="swish", model_type="gau_alpha", architectures=["GAUAlphaForMaskedLM"])  # fmt: skip
    (gau / "config.json").write_text(json.dumps(port))
    torch.save(to_junnyu_state_dict(ours.state_dict(), cfg), gau / "pytorch_model.bin")
    loaded = load_model(gau)
    assert (loaded.arch, loaded.task, loaded.kind) == ("gau-alpha", "mlm", "junnyu")
    ids = torch.randint(1, cfg.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, ours(ids).logits)

    quad = tmp_path / "quad"  # FLASHQuad_pytorch configs have no model_type: found by the flash_quad. keys
    quad.mkdir()
    (quad / "config.json").write_text(json.dumps(QUAD_JUNNYU))
    sd = _random_junnyu_quad(from_junnyu_quad_config(QUAD_JUNNYU))
    torch.save(sd, quad / "pytorch_model.bin")
    loaded = load_model(quad)
    assert (loaded.arch, loaded.task) == ("flash-quad", "mlm") and "model_type flash_quad" in loaded.description
    ids, mask = torch.randint(1, 40, (2, 10)), torch.ones(2, 10, dtype=torch.long)
    with torch.no_grad():
        expected = _junnyu_quad_logits(sd, ids, mask, QUAD_JUNNYU)
        torch.testing.assert_close(loaded.model(ids, attention_mask=mask).logits, expected,
                                   **TOL["batched_fp32_reshaped"])  # fmt: skip


@pytest.mark.hf
def test_export_takes_any_trained_source(tmp_path: Path, capsys) -> None:
    """A JunnYu GAU-alpha directory (weights + vocab.txt) exports self-contained, its tokenizer as tokenizer files
    only; without --output_dir, or from an untrained source, export stops in one line."""
    cfg = gau_alpha_config()
    gau = tmp_path / "gau"
    _bert_vocab(gau)
    cfg = dataclasses.replace(cfg, vocab_size=len((gau / "vocab.txt").read_text(encoding="utf-8").splitlines()))
    ours = lmforge.build_model("gau-alpha", task="mlm", config=cfg).eval()
    port = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                intermediate_size=cfg.intermediate_size, attention_key_size=cfg.attention_key_size,
                hidden_act="swish", model_type="gau_alpha", architectures=["GAUAlphaForMaskedLM"])  # fmt: skip
    (gau / "config.json").write_text(json.dumps(port))
    torch.save(to_junnyu_state_dict(ours.state_dict(), cfg), gau / "pytorch_model.bin")
    out = cli.run(["export", str(gau), "--output_dir", str(tmp_path / "hf")])
    files = {p.name for p in out.iterdir()}
    assert {"modeling_lmforge.py", "model.safetensors", "vocab.txt"} <= files and "pytorch_model.bin" not in files
    assert "auto_map" in json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert not list(tmp_path.glob(".*-tokenizer"))  # the temporary tokenizer copy is gone
    capsys.readouterr()
    for argv, expected in (([str(gau)], "pass --output_dir"), (["bert", "--output_dir", str(tmp_path / "x")],
                                                                "nothing trained to export")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["export", *argv])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and expected in err and len(err.splitlines()) == 1, err


def test_junnyu_flash_directory(tmp_path: Path) -> None:
    junnyu = dict(model_type="flash", vocab_size=40, hidden_size=16, num_hidden_layers=2, group_size=4,
                  query_key_dim=8, max_position_embeddings=64)  # fmt: skip
    cfg = from_junnyu_flash_config(junnyu)
    ours = lmforge.build_model("flash", task="mlm", config=cfg).eval()
    (tmp_path / "config.json").write_text(json.dumps(junnyu))
    save_file({k: v.clone() for k, v in to_junnyu_flash(ours.state_dict(), cfg, model="flash").items()},
              str(tmp_path / "model.safetensors"))  # fmt: skip
    loaded = load_model(tmp_path)
    assert (loaded.arch, loaded.task, loaded.kind) == ("flash", "mlm", "junnyu")
    ids = torch.randint(0, 40, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, ours(ids).logits)


def _lucidrains(tied: bool, causal: bool = False):
    flash_pytorch = importlib.import_module("flash_pytorch")
    theirs = flash_pytorch.FLASHTransformer(dim=16, num_tokens=40, depth=2, group_size=4, query_key_dim=8,
                                            causal=causal).eval()  # fmt: skip
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "rotary" not in name:
                p.add_(0.3 * torch.randn_like(p))
        if tied:
            theirs.to_logits[1].weight.copy_(theirs.token_emb.weight)
    return theirs


@pytest.mark.parametrize("causal", [False, True])
def test_lucidrains_state_dict_file(tmp_path: Path, causal: bool) -> None:
    theirs = _lucidrains(tied=True, causal=causal)
    file = tmp_path / "flash.pt"
    torch.save(theirs.state_dict(), file)
    with pytest.raises(ValueError, match=r"does not record \['group_size', 'is_decoder', 'shift_tokens'\]"):
        load_model(file)
    overrides = {"group_size": 4, "is_decoder": causal, "shift_tokens": True}
    loaded = load_model(file, overrides=overrides)
    assert loaded.task == ("clm" if causal else "mlm") and loaded.config.intermediate_size == 32
    ids = torch.randint(0, 40, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, theirs(ids), **TOL["batched_fp32_reshaped"])


def test_untied_lucidrains_file_gives_the_backbone(tmp_path: Path) -> None:
    file = tmp_path / "flash.safetensors"
    save_file({k: v.clone() for k, v in _lucidrains(tied=False).state_dict().items()}, str(file))
    loaded = load_model(file, overrides={"group_size": 4, "is_decoder": False, "shift_tokens": True})
    assert loaded.task == "backbone" and "to_logits is untied" in loaded.description
    with pytest.raises(ValueError, match="holds a backbone model"):
        load_model(file, task="mlm", overrides={"group_size": 4, "is_decoder": False, "shift_tokens": True})


# ----------------------------------------------------------------------------- resolution order and messages


def _checkpoint(run: Path, step: int = 3) -> tuple[Path, torch.nn.Module]:
    model = lmforge.build_model("bert", task="mlm", preset="tiny")
    info = {"model": "bert", "task": "mlm", "config": dataclasses.asdict(model.config)}
    return save_checkpoint(run, step, weights=model.state_dict(), model_info=info), model


def test_resolution_order_and_the_one_line(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bert").mkdir()  # 1. a registered name wins over a directory of that name
    loaded = load_model("bert", preset="tiny")
    assert (loaded.kind, loaded.weights) == ("registry", None)
    assert capsys.readouterr().err == "model: registered architecture bert (preset tiny), random init\n"

    checkpoint, model = _checkpoint(tmp_path / "run")  # 2. a run directory and a checkpoint
    loaded = load_model(tmp_path / "run")
    assert loaded.kind == "run" and loaded.checkpoint == checkpoint
    assert capsys.readouterr().err == f"model: lmforge run {tmp_path / 'run'} -> checkpoint-3 (bert, mlm)\n"
    assert load_model(checkpoint).kind == "checkpoint"
    assert capsys.readouterr().err == f"model: lmforge checkpoint {checkpoint} (bert, mlm)\n"

    export = tmp_path / "export"  # 3. an lmforge-format export
    export.mkdir()

    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(export / "model.safetensors"))
    hf_config = {"model_type": "lmforge-bert", "lmforge_model": "bert", "lmforge_task": "mlm",
                 "lmforge_config": dataclasses.asdict(model.config)}  # fmt: skip
    (export / "config.json").write_text(json.dumps(hf_config))
    loaded = load_model(export)
    assert capsys.readouterr().err == f"model: lmforge export {export} (format lmforge: bert, mlm)\n"
    ids = torch.randint(1, 99, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, model.eval()(ids).logits)

    head = tmp_path / "export-head"  # a fine-tuned model exported in format lmforge: its backbone
    head.mkdir()
    backbone = {f"model.backbone.{k}": v.contiguous() for k, v in model.backbone.state_dict().items()}
    save_file(backbone | {"model.head.classifier.weight": torch.zeros(2, 32)}, str(head / "model.safetensors"))
    (head / "config.json").write_text(json.dumps(hf_config | {"lmforge_task": "sequence_classification"}))
    loaded = load_model(head)
    assert loaded.task == "backbone" and "sequence_classification: backbone only" in loaded.description
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), model.backbone(ids))
    capsys.readouterr()

    with pytest.raises(ValueError, match=r"--model gpt conflicts with .* which holds a bert model"):
        load_model(export, model="gpt")
    with pytest.raises(ValueError, match=r"holds a mlm model .* needs a clm model"):
        load_model(export, task="clm")
    fresh = load_model(export, task="clm", new_head=True)  # continued pretraining with another objective
    assert fresh.fresh_head and "its backbone with a new clm head" in fresh.description


@pytest.mark.parametrize(
    ("field", "value"),
    [("attention_bias", True), ("hidden_act", "gelu"), ("rope_scaling", {"rope_type": "linear", "factor": 2.0})],
)
def test_llama_fields_our_gpt_cannot_represent_are_named(tmp_path: Path, field: str, value) -> None:
    fields = dict(CASES["llama-clm"][0], **{field: value})
    (tmp_path / "config.json").write_text(json.dumps(fields))
    (tmp_path / "model.safetensors").write_bytes(b"")  # never read: the config fails first
    name = "rope_type" if field == "rope_scaling" else field
    with pytest.raises(ValueError, match=f"LLaMA config field {name}=.* is not supported by lmforge's GPT"):
        load_model(tmp_path)


def test_weights_that_do_not_fit_an_override_are_one_line(tmp_path: Path) -> None:
    checkpoint, _ = _checkpoint(tmp_path / "run")
    with pytest.raises(ValueError, match=r"unknown config fields for model 'bert': \['hiden_size'\]"):
        load_model(checkpoint, overrides={"hiden_size": 8})
    with pytest.raises(ValueError, match="'bert' is an architecture name"):
        load_model("bert", preset="tiny", task="mlm", with_tokenizer=True)
    with pytest.raises(ValueError, match="missing 1 required keyword-only argument: 'vocab_size'; pass a"):
        load_model("bert")
    with pytest.raises(ValueError, match=r"do not fit its config: size mismatch for .*word_embeddings") as error:
        load_model(checkpoint, overrides={"vocab_size": 120}).build()
    assert "\n" not in str(error.value)


# ----------------------------------------------------------------------------- bad input: one line, exit 2


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _bad_sources(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    theirs = _hf_model(CASES["bert-mlm"][0], "BertForMaskedLM")
    no_config = _save(theirs, tmp_path / "no_config")
    (no_config / "config.json").unlink()
    unknown = _save(theirs, tmp_path / "unknown")
    (unknown / "config.json").write_text(json.dumps({"model_type": "t5", "architectures": ["T5Model"]}))
    truncated = _save(theirs, tmp_path / "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    pickled = _save(theirs, tmp_path / "pickled")
    (pickled / "model.safetensors").unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": _Payload(tmp_path / "PWNED")}, pickled / "pytorch_model.bin")
    small = _save(_hf_model(CASES["bert-mlm"][0] | {"vocab_size": 30}, "BertForMaskedLM"), tmp_path / "small")
    build_char_tokenizer(["今天天气很好我们一起去公园散步然后回家吃饭"] * 2, min_frequency=1).save(small)
    return {
        "no_config": (no_config, "has weights (model.safetensors) but no config.json"),
        "unknown": (unknown, "model_type 't5' is not supported"),
        "truncated": (truncated, "cannot read the weights"),
        "pickled": (pickled, "is not a plain tensor file (loaded with weights_only=True)"),
        "vocab": (small, "has vocab_size 30 but the tokenizer has"),
        "missing": (tmp_path / "nope", "neither a checkpoint"),
    }


@pytest.mark.hf
def test_bad_sources_are_one_line_and_run_nothing(tmp_path: Path, capsys) -> None:
    sources = _bad_sources(tmp_path)
    capsys.readouterr()  # save_pretrained's progress bars
    for name, (source, message) in sources.items():
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["fill-mask", str(source), "今天[MASK]气很好"])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and message in err and len(err.splitlines()) == 1, (name, err)
    assert not (tmp_path / "PWNED").exists()


def test_pretrain_needs_a_model_and_rejects_a_conflicting_one(tmp_path: Path, capsys) -> None:
    seed = (  # seed 001's run_mlm_wwm.py call: it names no architecture
        f"pretrain --tokenizer_name junnyu/roformer_chinese_char_base --train_dir {tmp_path / 'data'} "
        f"--output_dir {tmp_path / 'out'} --per_device_train_batch_size 32 --gradient_accumulation_steps 4 "
        "--learning_rate 1e-4 --weight_decay 0.01 --adam_epsilon 1e-6 --max_steps 250000 --warmup_steps 5000 "
        "--logging_steps 100 --save_steps 5000 --seed 2022 --max_grad_norm 3.0 --dataloader_num_workers 6 --fp16"
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main(shlex.split(seed))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "no model named: pass --model" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        cli.main([*shlex.split(seed), "--config_name", str(tmp_path / "no-such-config")])
    assert "neither a checkpoint" in capsys.readouterr().err

    data = tiny_data.make_data(tmp_path / "data")
    _checkpoint(tmp_path / "run")
    common = ["--train_dir", str(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--use_cpu"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["pretrain", "--model", "gpt", "--model_name_or_path", str(tmp_path / "run"), *common])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "--model gpt conflicts with" in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------- commands on an HF directory


def _bert_vocab(directory: Path) -> int:
    """A BERT ``vocab.txt`` (specials first, then the characters of the bundled lo_topic task); its size."""
    texts = [json.loads(line)["sentence"] for line in (REPO / "data/clue/lo_topic/train.jsonl").open(encoding="utf-8")]
    chars = sorted({c for text in texts for c in text.lower() if not c.isspace()})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return len(tokens)


@pytest.mark.hf
def test_commands_run_on_hf_directories(tmp_path: Path, capsys) -> None:
    vocab = _bert_vocab(tmp_path / "bert")
    bert = BertConfig(**(BERT_PRESETS["tiny"] | {"vocab_size": vocab, "max_position_embeddings": 128}))
    _save(_hf_model(_convert("bert").to_hf_config(bert), "BertForMaskedLM"), tmp_path / "bert")
    argv = ["finetune", "classification", "--model", str(tmp_path / "bert"), "--data_dir",
            str(REPO / "data/clue/lo_topic"), "--output_dir", str(tmp_path / "ft"), "--max_steps", "2",
            "--max_train_samples", "16", "--per_device_train_batch_size", "8", "--max_seq_length", "32",
            "--do_predict", "false", "--disable_tqdm", "true", "--report_to", "none", "--use_cpu", "true"]  # fmt: skip
    report = cli.run(argv)
    assert report["steps"] == 2 and report["arch"] == "bert"
    assert "model: Hugging Face directory" in capsys.readouterr().err
    # the run keeps the tokenizer alone, not the HF model directory it came from; so the export of the fine-tuned
    # model is the task model, not the source's config.json and weights copied over it
    saved = {p.name for p in (tmp_path / "ft" / "checkpoint-2" / "tokenizer").iterdir()}
    assert "vocab.txt" in saved and not saved & {"config.json", "model.safetensors"}
    exported = cli.run(["export", str(tmp_path / "ft"), "--output_dir", str(tmp_path / "ft-hf")])
    hf_config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    assert hf_config["architectures"] != ["BertForMaskedLM"] and len(hf_config["id2label"]) == 8

    predictions = cli.run(["fill-mask", str(tmp_path / "bert"), "此函数用于计算平[MASK]根。", "--top_k", "3"])
    assert len(predictions) == 1 and len(predictions[0]) == 3
    report = cli.run(["inspect", str(tmp_path / "bert"), "--text", "此函数用于计算平方根。", "--output_dir",
                      str(tmp_path / "inspect")])  # fmt: skip
    assert report["model"] == "bert" and (tmp_path / "inspect" / "inspect.json").is_file()

    _bert_vocab(tmp_path / "gpt2")
    gpt = GPTConfig(**(GPT_PRESETS["tiny"] | {"vocab_size": vocab}))
    _save(_hf_model(_convert("gpt").to_hf_config(gpt), "GPT2LMHeadModel"), tmp_path / "gpt2")
    texts = cli.run(["generate", str(tmp_path / "gpt2"), "此函数", "--max_new_tokens", "5"])
    assert len(texts) == 1
    err = capsys.readouterr().err
    assert "(model_type gpt2 -> lmforge gpt, GPT2LMHeadModel weights)" in err


@pytest.mark.hf
def test_pretrain_continues_from_and_configures_from_hf_directories(tmp_path: Path, capsys) -> None:
    data = tiny_data.make_data(tmp_path / "data")
    bert = BertConfig(**(BERT_PRESETS["tiny"] | {"vocab_size": 256, "max_position_embeddings": 64}))
    _save(_hf_model(_convert("bert").to_hf_config(bert), "BertModel"), tmp_path / "hf")
    common = ["--train_dir", str(data), "--max_steps", "1", "--save_steps", "1", "--max_seq_length", "32",
              "--per_device_train_batch_size", "4", "--do_eval", "false", "--disable_tqdm", "--report_to", "none",
              "--use_cpu"]  # fmt: skip
    capsys.readouterr()
    result = cli.run(["pretrain", "--model_name_or_path", str(tmp_path / "hf"), "--output_dir", str(tmp_path / "a"),
                      *common])  # fmt: skip
    assert result["step"] == 1
    assert "BertModel weights: backbone only); its backbone with a new mlm head" in capsys.readouterr().err
    info = json.loads((tmp_path / "a" / "checkpoint-1" / "config.json").read_text())
    assert info["model"] == "bert" and info["task"] == "mlm" and info["config"]["vocab_size"] == 256

    cli.run(["pretrain", "--config_name", str(tmp_path / "hf"), "--output_dir", str(tmp_path / "b"), *common])
    assert "config only: random init" in capsys.readouterr().err
    assert json.loads((tmp_path / "b" / "checkpoint-1" / "config.json").read_text())["config"]["vocab_size"] == 256


@pytest.mark.hf
def test_finetune_a_canine_directory_without_tokenizer_files(tmp_path: Path) -> None:
    canine = _convert("canine").to_hf_config(CanineConfig(**CANINE_PRESETS["tiny"]))
    _save(_hf_model(canine, "CanineModel"), tmp_path / "canine")
    argv = ["finetune", "classification", "--model", str(tmp_path / "canine"), "--data_dir",
            str(REPO / "data/clue/lo_topic"), "--output_dir", str(tmp_path / "ft"), "--max_steps", "1",
            "--max_train_samples", "8", "--per_device_train_batch_size", "8", "--max_seq_length", "32",
            "--do_eval", "false", "--do_predict", "false", "--disable_tqdm", "true", "--report_to", "none",
            "--use_cpu", "true"]  # fmt: skip
    report = cli.run(argv)
    assert report["arch"] == "canine" and report["steps"] == 1
    meta = json.loads((tmp_path / "ft" / "checkpoint-1" / "tokenizer" / "lmforge_tokenizer.json").read_text())
    assert meta["kind"] == "codepoint"


@pytest.mark.hf
def test_an_hf_trainer_checkpoint_directory_is_read_as_hugging_face(tmp_path: Path, capsys) -> None:
    """``Trainer`` names its checkpoints ``checkpoint-N`` as lmforge does; one with an HF config.json must load as
    the HF model it is, not be refused as a damaged lmforge checkpoint; a bare ``checkpoint-N`` still is."""
    fields, architecture, _ = CASES["bert-mlm"]
    theirs = _hf_model(fields, architecture)
    _save(theirs, tmp_path / "run" / "checkpoint-500")
    capsys.readouterr()
    loaded = load_model(tmp_path / "run" / "checkpoint-500")
    assert loaded.kind == "hf" and loaded.arch == "bert"
    batch = _ids(fields["vocab_size"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**batch).logits, theirs(**batch).logits)
    (tmp_path / "run" / "checkpoint-7").mkdir()
    with pytest.raises(ValueError, match="checkpoint-7 is damaged"):
        load_model(tmp_path / "run" / "checkpoint-7")
