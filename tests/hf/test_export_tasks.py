"""Every architecture x {its LM, sequence classification, token classification, span QA}: a tiny checkpoint written
as ``finetune`` writes it -> ``export_checkpoint`` -> the expected class (native where one is exact, our wrapper
with remote code otherwise) -> ``from_pretrained`` -> our logits on real positions; labels in ``id2label``."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from lmforge.heads.classification import TaskModel, backbone_output_size
from lmforge.hf.export import comparable_logits, export_checkpoint, export_model, probe_inputs, verify_export
from lmforge.hf.modeling import build_task_head
from lmforge.models.registry import build_model, config_to_dict, get_entry
from lmforge.train.checkpoint import save_checkpoint

pytestmark = pytest.mark.hf
transformers = importlib.import_module("transformers")

LABELS = ["neg", "pos", "neutral"]
TAGS = ["O", "B-LOC", "I-LOC"]
# the "head" entry of a fine-tuned checkpoint's config.json, as tasks/{clue,ner,qa}.py write it
HEADS = {
    "sequence_classification": {"kind": "sequence_classification", "labels": LABELS, "pooling": "cls", "dropout": 0.1},
    "token_classification": {"kind": "token_classification", "labels": TAGS, "dropout": 0.1},
    "span": {"kind": "span"},
}
MODELS = [("bert", "tiny"), ("bert", "roformer-tiny"), ("gpt", "tiny"), ("canine", "tiny"), ("reformer", "tiny"),
          ("gau-alpha", "tiny"), ("flash-quad", "tiny"), ("flash", "tiny")]  # fmt: skip
# (arch, preset) -> task -> the class in config.json; None: our wrapper with remote code (Lmforge<Arch>For...)
NATIVE = {
    ("bert", "tiny"): {"lm": "BertForMaskedLM", "token_classification": "BertForTokenClassification",
                       "span": "BertForQuestionAnswering"},
    ("bert", "roformer-tiny"): {"lm": "RoFormerForMaskedLM", "token_classification": "RoFormerForTokenClassification",
                                "span": "RoFormerForQuestionAnswering"},
    ("gpt", "tiny"): {"lm": "GPT2LMHeadModel", "token_classification": "GPT2ForTokenClassification",
                      "span": "GPT2ForQuestionAnswering"},
    ("canine", "tiny"): {"token_classification": "CanineForTokenClassification", "span": "CanineForQuestionAnswering"},
    ("reformer", "tiny"): {"lm": "ReformerForMaskedLM", "span": "ReformerForQuestionAnswering"},
}  # fmt: skip
AUTO = {"lm": None, "sequence_classification": "AutoModelForSequenceClassification",
        "token_classification": "AutoModelForTokenClassification", "span": "AutoModelForQuestionAnswering"}  # fmt: skip


def _randomise_head(model: torch.nn.Module) -> None:
    """Trained-looking head weights (nonzero biases), so a dropped or misplaced bias shows."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def tiny_checkpoint(
    root: Path, arch: str, preset: str, task: str, *, tokenizer_dir: Path | None = None, lm: str | None = None,
    overrides: dict | None = None, **head_fields
) -> tuple[Path, torch.nn.Module]:  # fmt: skip
    """``root/run/checkpoint-1`` holding a tiny ``arch`` model for ``task`` ("lm": ``lm`` or its MLM, else its CLM;
    or a head kind) with ``overrides`` of the preset, and the model in eval mode."""
    torch.manual_seed(0)
    overrides = overrides or {}
    if task == "lm":
        objective = lm or ("mlm" if "mlm" in get_entry(arch).builders else "clm")
        model = build_model(arch, task=objective, preset=preset, **overrides)
        info = {"model": arch, "task": objective, "config": config_to_dict(model.config)}
    else:
        backbone = build_model(arch, preset=preset, **overrides)
        head = HEADS[task] | head_fields
        model = TaskModel(backbone, build_task_head(head, backbone_output_size(backbone)))
        _randomise_head(model)
        info = {"model": arch, "task": "finetune-x", "config": config_to_dict(backbone.config), "head": head}
    checkpoint = save_checkpoint(
        root / "run", 1, weights=model.state_dict(), model_info=info, tokenizer_dir=tokenizer_dir
    )
    return checkpoint, model.eval()


def assert_same_logits(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    inputs = probe_inputs(ours.config)
    with torch.no_grad():
        expected = comparable_logits(ours(**inputs), inputs["attention_mask"])
        actual = comparable_logits(theirs.eval()(**inputs), inputs["attention_mask"])
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("task", ["lm", "sequence_classification", "token_classification", "span"])
@pytest.mark.parametrize(("arch", "preset"), MODELS)
def test_every_architecture_and_task_exports_and_reloads(arch: str, preset: str, task: str, tmp_path: Path) -> None:
    checkpoint, ours = tiny_checkpoint(tmp_path, arch, preset, task)
    out = export_checkpoint(checkpoint, tmp_path / f"hf-{arch}-{preset}-{task}")  # verifies, remote code included
    config = json.loads((out / "config.json").read_text())
    native = NATIVE.get((arch, preset), {}).get(task)
    if native is not None:
        assert config["architectures"] == [native] and "auto_map" not in config
        assert not (out / "modeling_lmforge.py").exists()
    else:
        assert config["architectures"][0].startswith("Lmforge") and config["model_type"] == f"lmforge-{arch}"
        assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel"} and (out / "modeling_lmforge.py").is_file()
    if task in ("sequence_classification", "token_classification"):
        names = LABELS if task == "sequence_classification" else TAGS
        assert config["id2label"] == {str(i): name for i, name in enumerate(names)}
        assert config["label2id"] == {name: i for i, name in enumerate(names)}
    auto_name = AUTO[task] or ("AutoModelForMaskedLM" if config["architectures"][0].endswith("MaskedLM") else
                               "AutoModelForCausalLM")  # fmt: skip
    assert_same_logits(ours, getattr(transformers, auto_name).from_pretrained(out))  # `import lmforge.hf` classes


@pytest.mark.parametrize(
    ("arch", "preset", "head", "expected"),
    [
        ("bert", "tiny", {"use_pooler": True}, "BertForSequenceClassification"),  # HF's pooler is exactly ours
        ("bert", "tiny", {"pooling": "mean", "use_pooler": True}, None),
        ("bert", "roformer-tiny", {"use_pooler": True}, None),  # RoFormer's head uses hidden_act, not tanh
        ("gpt", "tiny", {"pooling": "last"}, None),  # GPT-2's score has no bias and looks for pad_token_id
        ("gpt", "tiny-modern", {"kind": "token_classification", "labels": TAGS}, None),  # not GPT-2-shaped
        ("reformer", "tiny", {"use_pooler": True}, None),  # Reformer's pooler narrows to hidden_size
    ],
)
def test_a_sequence_classifier_is_native_only_when_hf_computes_it_exactly(arch, preset, head, expected, tmp_path):
    torch.manual_seed(0)
    backbone = build_model(arch, preset=preset)
    entry = HEADS["sequence_classification"] | head
    model = TaskModel(backbone, build_task_head(entry, backbone_output_size(backbone)))
    _randomise_head(model)
    info = {"model": arch, "task": "finetune-x", "config": config_to_dict(backbone.config), "head": entry}
    out = export_model(model.eval(), info, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [expected] if expected else config["architectures"][0].startswith("Lmforge")
    auto = getattr(transformers, f"AutoModelFor{type(model.head).__name__.removesuffix('Head')}")
    assert_same_logits(model, auto.from_pretrained(out))


def test_native_format_refuses_a_model_without_an_exact_class(tmp_path: Path) -> None:
    checkpoint, _ = tiny_checkpoint(tmp_path, "gau-alpha", "tiny", "lm")
    with pytest.raises(ValueError, match="no native Hugging Face class computes this gau-alpha mlm model"):
        export_checkpoint(checkpoint, tmp_path / "hf", format="native")
    checkpoint, _ = tiny_checkpoint(tmp_path / "b", "bert", "tiny", "sequence_classification")
    with pytest.raises(ValueError, match="without a pooler"):
        export_checkpoint(checkpoint, tmp_path / "hf2", format="native")


def test_a_native_task_export_can_also_be_forced_to_remote_code(tmp_path: Path) -> None:
    checkpoint, ours = tiny_checkpoint(tmp_path, "bert", "tiny", "token_classification")
    out = export_checkpoint(checkpoint, tmp_path / "hf", format="lmforge")
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LmforgeBertForTokenClassification"]
    assert_same_logits(ours, transformers.AutoModelForTokenClassification.from_pretrained(out))


def test_model_card_names_the_auto_class_and_pipeline_of_the_task(tmp_path: Path) -> None:
    checkpoint, _ = tiny_checkpoint(tmp_path, "flash", "tiny", "token_classification")
    card = (export_checkpoint(checkpoint, tmp_path / "remote") / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card
    assert "AutoModelForTokenClassification.from_pretrained(model_dir, trust_remote_code=True)" in card
    assert 'pipeline("token-classification", model=model_dir, trust_remote_code=True)' in card
    checkpoint, _ = tiny_checkpoint(tmp_path / "b", "bert", "tiny", "span")
    card = (export_checkpoint(checkpoint, tmp_path / "native") / "README.md").read_text()
    assert "pipeline_tag: question-answering" in card and "trust_remote_code" not in card
    assert "AutoModelForQuestionAnswering.from_pretrained(model_dir)" in card


def test_auto_classes_are_registered_for_every_architecture() -> None:
    import lmforge.hf  # noqa: F401

    for arch in ("gau-alpha", "flash", "canine"):
        config = transformers.AutoConfig.for_model(f"lmforge-{arch}", lmforge_model=arch)
        for auto in ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForTokenClassification",
                     "AutoModelForQuestionAnswering", "AutoModelForMaskedLM"):  # fmt: skip
            assert type(config) in getattr(transformers, auto)._model_mapping, (arch, auto)
    gpt = transformers.AutoConfig.for_model("lmforge-gpt")
    assert type(gpt) in transformers.AutoModelForCausalLM._model_mapping
    assert type(gpt) not in transformers.AutoModelForMaskedLM._model_mapping  # GPT has no MLM builder


def test_auto_model_loads_the_backbone_of_any_export(tmp_path: Path) -> None:
    checkpoint, ours = tiny_checkpoint(tmp_path, "gau-alpha", "tiny", "span")
    out = export_checkpoint(checkpoint, tmp_path / "hf")
    backbone = transformers.AutoModel.from_pretrained(out).eval()
    inputs = probe_inputs(ours.config)
    with torch.no_grad():
        hidden = backbone(**inputs, output_hidden_states=True)
        assert "token_type_ids" in inputs  # GAU-alpha has segments: they must reach the backbone too
        expected = ours.backbone(inputs.pop("input_ids"), **inputs)
    torch.testing.assert_close(hidden.last_hidden_state, expected, rtol=0, atol=0)
    assert len(hidden.hidden_states) == ours.config.num_hidden_layers + 1


def test_a_finetune_run_exports_from_the_cli_and_runs_its_pipeline(tmp_path: Path, capsys) -> None:
    """``lmforge finetune`` output dir -> ``lmforge export RUN`` -> ``pipeline("text-classification")`` labels."""
    from lmforge import cli
    from lmforge.data.tokenizer import build_char_tokenizer
    from lmforge.tasks.finetune import FinetuneArgs, finetune

    spec = importlib.util.spec_from_file_location("task_data", Path(__file__).parents[1] / "tasks" / "task_data.py")
    task_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task_data)
    tokenizer = tmp_path / "tokenizer"
    build_char_tokenizer([task_data.POSITIVE + task_data.NEGATIVE], vocab_size=100, min_frequency=1).save(tokenizer)
    for split, (n, seed) in {"train": (32, 1), "dev": (8, 2)}.items():
        task_data.write_rows(tmp_path / "data" / f"{split}.json", task_data.synthetic_rows(n, seed=seed))
    args = FinetuneArgs("classification", model="flash", model_preset="tiny", tokenizer_dir=str(tokenizer),
                        data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "run"), max_steps=2,
                        per_device_train_batch_size=8, disable_tqdm=True, report_to="none",
                        do_predict=False)  # fmt: skip
    finetune(args)
    cli.main(["export", str(tmp_path / "run")])
    assert "exported" in capsys.readouterr().out
    out = tmp_path / "run" / "hf"
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    classify = transformers.pipeline("text-classification", model=str(out), top_k=None)
    assert {p["label"] for p in classify(["春夏秋冬"])[0]} == {"neg", "pos"}
    assert "Final metrics" in (out / "README.md").read_text()


@pytest.mark.parametrize(("arch", "task"), [("gau-alpha", "token_classification"), ("bert", "span")])
def test_verification_catches_a_model_that_differs(arch: str, task: str, tmp_path: Path) -> None:
    checkpoint, ours = tiny_checkpoint(tmp_path, arch, "tiny", task)
    out = export_checkpoint(checkpoint, tmp_path / "hf")
    layer = ours.head.qa_outputs if task == "span" else ours.head.classifier
    with torch.no_grad():
        layer.bias.add_(1e-3)
    with pytest.raises(ValueError, match="does not reproduce our logits"):
        verify_export(ours, out, task, remote=arch == "gau-alpha")
