"""``lmforge finetune`` end to end on tiny models: learns a synthetic task, keeps the best checkpoint, writes the
CLUE prediction file, works on every registered backbone, and reports bad input as one line."""

from __future__ import annotations

import json

import pytest
import torch
from task_data import synthetic_rows, write_rows

from lmforge.cli import run
from lmforge.heads.classification import SequenceClassificationHead, TaskModel
from lmforge.models.registry import build_model, list_models
from lmforge.tasks.finetune import FinetuneArgs, finetune, load_task_model
from lmforge.train.optim import build_optimizer, layerwise_lr_groups, param_groups, set_learning_rate


def _args(data_dir, tokenizer_dir, out, **overrides) -> FinetuneArgs:
    values = dict(
        model="bert", model_preset="tiny", tokenizer_dir=str(tokenizer_dir), data_dir=str(data_dir),
        output_dir=str(out), learning_rate=3e-3, num_train_epochs=2, per_device_train_batch_size=16,
        warmup_ratio=0.0, disable_tqdm=True, logging_steps=5,
    )  # fmt: skip
    values.update(overrides)
    return FinetuneArgs("classification", **values)


def test_finetune_beats_the_majority_baseline_and_writes_its_outputs(synthetic_task, char_tokenizer_dir, tmp_path):
    report = finetune(_args(synthetic_task, char_tokenizer_dir, tmp_path / "run"))
    dev = report["dev"]
    assert dev["accuracy"] >= dev["majority_baseline_accuracy"] + 0.25, dev
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / "dev_metrics.json").read_text())
    assert set(metrics["per_class"]) == {"neg", "pos"} and sum(map(sum, metrics["confusion_matrix"])) == 60
    assert (run_dir / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "loss.png").is_file()
    # CLUE leaderboard format: one {"id", "label"} JSON object per line, in test order, with the test ids
    lines = (run_dir / "classification_predict.json").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == list(range(10)) and all(set(r) == {"id", "label"} for r in records)
    assert {r["label"] for r in records} <= {"neg", "pos"}
    # the kept checkpoint is the best by dev accuracy and reloads to the same dev accuracy
    evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    accuracies = {r["step"]: r["eval_accuracy"] for r in evals if "eval_accuracy" in r}
    assert report["best_step"] == max(accuracies, key=lambda s: (accuracies[s], -s))
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == [f"checkpoint-{report['best_step']}"]
    assert dev["accuracy"] == accuracies[report["best_step"]]
    model, info, _ = load_task_model(run_dir)
    assert not model.training and info["task"] == "finetune-classification" and info["head"]["labels"] == ["neg", "pos"]
    counts = json.loads((run_dir / "report.json").read_text())["counts"]
    assert counts["train"]["examples"] == 160 and counts["test"]["lines"] == 10
    assert counts["dev"]["unknown_token_share"] == 0.0 and counts["dev"]["truncated"] == 0


@pytest.mark.parametrize("name", sorted(list_models()))
def test_finetune_runs_on_every_backbone(name, char_tokenizer_dir, tmp_path):
    """A sentence-pair task (token types 0 and 1) for 2 steps, then the checkpoint reloads."""
    pairs = tmp_path / "pairs"
    for split, seed in (("train", 1), ("dev", 2)):
        rows = synthetic_rows(24, seed=seed)
        write_rows(pairs / f"{split}.json", [{"sentence1": r["sentence"], "sentence2": r["sentence"][::-1],
                                              "label": r["label"]} for r in rows])  # fmt: skip
    args = _args(pairs, char_tokenizer_dir, tmp_path / name, model=name, max_steps=2, do_predict=False)
    args.max_seq_length = 16
    report = finetune(args)
    assert 0.0 <= report["dev"]["accuracy"] <= 1.0 and report["steps"] == 2
    model, info, _ = load_task_model(tmp_path / name)
    assert info["model"] == name and isinstance(model.head, SequenceClassificationHead)


def test_finetune_from_a_pretraining_checkpoint(synthetic_task, char_tokenizer_dir, tmp_path):
    """A run directory as --model: backbone weights from its newest checkpoint, the tokenizer from its copy."""
    from lmforge.data.tokenizer import load_tokenizer
    from lmforge.models.registry import config_to_dict
    from lmforge.tasks.finetune import load_backbone
    from lmforge.train.checkpoint import save_checkpoint

    vocab = load_tokenizer(char_tokenizer_dir).vocab_size
    lm = build_model("bert", task="mlm", preset="tiny", vocab_size=vocab)
    info = {"model": "bert", "task": "mlm", "config": config_to_dict(lm.config)}
    save_checkpoint(tmp_path / "pre", 7, weights=lm.state_dict(), model_info=info, tokenizer_dir=char_tokenizer_dir)
    args = _args(synthetic_task, None, tmp_path / "ft", model=str(tmp_path / "pre"), max_steps=1, do_predict=False)
    args.tokenizer_dir = None
    arch, _, backbone, tokenizer, tokenizer_dir = load_backbone(args)
    assert arch == "bert" and tokenizer.vocab_size == vocab and tokenizer_dir.parent.name == "checkpoint-7"
    for key, value in lm.backbone.state_dict().items():
        torch.testing.assert_close(backbone.state_dict()[key], value, rtol=0, atol=0)
    assert finetune(args)["steps"] == 1


def test_cli_reports_bad_input_as_one_line(synthetic_task, char_tokenizer_dir, tmp_path, capsys):
    rows = synthetic_rows(5, seed=9)
    rows[3]["label"] = "maybe"
    write_rows(synthetic_task / "dev.json", rows)
    argv = ["finetune", "classification", "--model", "bert", "--tokenizer_dir", str(char_tokenizer_dir),
            "--data_dir", str(synthetic_task), "--output_dir", str(tmp_path / "bad"), "--disable_tqdm"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "model: registered architecture bert (preset tiny), random init"  # the loader's status line
    assert len(lines) == 2 and "dev.json:4: label 'maybe' is not in the labels of" in lines[1]


def test_layerwise_lr_decay_scales_by_depth():
    backbone = build_model("bert", preset="tiny")
    model = TaskModel(backbone, SequenceClassificationHead(backbone.config.hidden_size, 2))
    groups = layerwise_lr_groups(model, param_groups(model, 0.01), decay=0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    scale = {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    assert scale["head.classifier.weight"] == 1.0  # L + 1 with L = 2
    assert scale[next(n for n in scale if n.startswith("backbone.layers.1."))] == 0.5
    assert scale[next(n for n in scale if n.startswith("backbone.layers.0."))] == 0.25
    assert scale["backbone.embeddings.word_embeddings.weight"] == 0.125
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    optimizer = build_optimizer(model, name="adamw_torch", lr=1.0, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8,
                                layerwise_lr_decay=0.5)  # fmt: skip
    set_learning_rate(optimizer, 2.0)
    assert sorted({g["lr"] for g in optimizer.param_groups}) == [0.25, 0.5, 1.0, 2.0]
    with pytest.raises(ValueError, match="layerwise_lr_decay"):
        layerwise_lr_groups(model, param_groups(model, 0.0), decay=0.0)


@pytest.mark.hf
@pytest.mark.parametrize(("name", "format"), [("bert", "native"), ("gau-alpha", "lmforge")])
def test_finetune_from_an_exported_hugging_face_directory(name, format, char_tokenizer_dir, tmp_path):
    """``lmforge export`` output (either format) as --model: same backbone weights, the tokenizer next to them."""
    from lmforge.data.tokenizer import load_tokenizer
    from lmforge.hf.export import export_checkpoint
    from lmforge.models.registry import config_to_dict
    from lmforge.tasks.finetune import load_backbone
    from lmforge.train.checkpoint import save_checkpoint

    vocab = load_tokenizer(char_tokenizer_dir).vocab_size
    lm = build_model(name, task="mlm", preset="tiny", vocab_size=vocab)
    info = {"model": name, "task": "mlm", "config": config_to_dict(lm.config)}
    checkpoint = save_checkpoint(tmp_path / "pre", 1, weights=lm.state_dict(), model_info=info,
                                 tokenizer_dir=char_tokenizer_dir)  # fmt: skip
    exported = export_checkpoint(checkpoint, tmp_path / "hf", format=format)
    arch, _, backbone, tokenizer, _ = load_backbone(FinetuneArgs("tnews", model=str(exported)))
    assert arch == name and tokenizer.vocab_size == vocab
    for key, value in lm.backbone.state_dict().items():
        torch.testing.assert_close(backbone.state_dict()[key], value, rtol=0, atol=0)


def test_every_finetune_config_validates():
    from pathlib import Path

    from lmforge.cli import STAGES, _stage_parser, _to_dataclass

    stage = STAGES["finetune"]
    configs = sorted((Path(__file__).parents[2] / "configs" / "finetune").glob("*.yaml"))
    assert {c.stem for c in configs} >= {"tnews", "iflytek", "afqmc", "ocnli", "cmnli", "cluewsc2020", "csl",
                                         "cmrc2018", "cluener"}  # fmt: skip
    for config in configs:
        values = _stage_parser("finetune", stage).parse_args(["--config", str(config), "--model", "m"]).as_dict()
        values.pop("config", None)
        args = _to_dataclass(stage.load(stage.args), values)
        assert args.task == config.stem.partition("-")[0] and args.model == "m"  # tydi-canine: task tydi


def test_a_tokenizer_that_does_not_fit_the_data_is_reported(synthetic_task, tmp_path, capsys):
    from lmforge.data.tokenizer import build_char_tokenizer

    build_char_tokenizer(["这个分词器没有任务的字"], vocab_size=300, min_frequency=1).save(tmp_path / "tok")
    report = finetune(_args(synthetic_task, tmp_path / "tok", tmp_path / "run", max_steps=1, do_predict=False))
    assert report["counts"]["train"]["unknown_token_share"] > 0.9
    assert "of tokens are [UNK]: is this the pretraining tokenizer?" in capsys.readouterr().out


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs(precision, synthetic_task, char_tokenizer_dir, tmp_path):
    precision_flag = {precision: True}
    args = _args(synthetic_task, char_tokenizer_dir, tmp_path / "run", max_steps=2, do_predict=False, **precision_flag)
    report = finetune(args)
    assert report["steps"] == 2 and 0.0 <= report["dev"]["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="exclusive"):
        FinetuneArgs("tnews", bf16=True, fp16=True)


def test_reports_and_the_confusion_matrix_name_the_labels(synthetic_task, char_tokenizer_dir, tmp_path, monkeypatch):
    """With CLUE's labels.json (ids such as 100 + label_desc), the per-class report carries the description and the
    confusion matrix is drawn with "id description" on its axes, not bare ids (issue 17)."""
    from lmforge.eval import metrics as metrics_module

    (synthetic_task / "labels.json").write_text(
        '{"label": "neg", "label_desc": "负面"}\n{"label": "pos", "label_desc": "正面"}\n', encoding="utf-8"
    )
    drawn = {}
    plot = metrics_module.plot_confusion_matrix

    def spy(matrix, names, out):
        drawn["names"] = list(names)
        return plot(matrix, names, out)

    monkeypatch.setattr(metrics_module, "plot_confusion_matrix", spy)
    finetune(_args(synthetic_task, char_tokenizer_dir, tmp_path / "run", num_train_epochs=1))
    metrics = json.loads((tmp_path / "run" / "dev_metrics.json").read_text())
    assert metrics["per_class"]["neg"]["label_desc"] == "负面" and metrics["label_names"] == ["neg 负面", "pos 正面"]
    assert drawn["names"] == ["neg 负面", "pos 正面"]
