"""``lmforge demo`` end to end on a slice of the bundled corpus with a tiny model (seconds, not minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lmforge.demo import DEFAULT_TEXT, DemoArgs, find_corpus, run_demo


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_demo_pipeline_with_tiny_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = DemoArgs(
        output_dir=str(tmp_path / "demo"),
        max_steps=40,
        model="gau-alpha",
        model_preset="tiny",
        max_seq_length=64,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        max_documents=150,
        top_k=3,
        disable_tqdm=True,
        finetune_epochs=1,
        finetune_max_train_samples=256,
    )
    result = run_demo(args)
    out = capsys.readouterr().out
    assert "pretrain gau-alpha/tiny" in out and "yes: the training loss fell" in out and "[MASK] #2" in out
    assert result["last_loss"] < 0.9 * result["first_loss"]
    # the cloze probe of the trained model next to the same model before training
    assert "cloze probe: 64 sentences" in out and "before training: top-1" in out
    trained, untrained = result["probe"]["trained"], result["probe"]["random_init"]
    assert trained["probe_items"] == untrained["probe_items"] == 64
    assert trained["probe_scored"] == untrained["probe_scored"] > 0 and "eval_probe_top5" in result
    assert len(result["predictions"]) == DEFAULT_TEXT.count("[MASK]")
    for options in result["predictions"]:
        probabilities = [p for _, p in options]
        assert len(options) == 3 and probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
    run = tmp_path / "demo"
    assert (run / "loss.png").is_file() and (run / "metrics.jsonl").is_file() and (run / "tensorboard").is_dir()
    assert list(run.glob("checkpoint-*/model.safetensors"))
    # step 5: the bundled labelled split, dev accuracy printed next to the majority-class baseline
    dev = result["finetune"]["dev"]
    assert f"lo_topic: dev accuracy {dev['accuracy']:.3f} vs the majority-class baseline" in out
    assert dev["num_examples"] == result["finetune"]["counts"]["dev"]["examples"] > 0
    assert 0.0 < dev["majority_baseline_accuracy"] < 0.5  # 8 classes
    assert (run / "finetune-lo_topic" / "confusion_matrix.png").is_file()


def test_corpus_location_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_corpus()  # the repository's data/corpus
    monkeypatch.setenv("LMFORGE_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="no corpus found"):
        find_corpus()
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text('{"text": "天气很好"}\n')
    assert find_corpus() == [tmp_path / "corpus" / "a.jsonl"]


def test_default_model_is_gau_alpha_and_bad_choices_fail_before_preparing(tmp_path: Path) -> None:
    assert (DemoArgs().model, DemoArgs().model_preset, DemoArgs().num_threads) == ("gau-alpha", "demo", 1)
    for overrides, message in (
        ({"model": "no-such-model"}, "no-such-model"),
        ({"model": "gpt", "model_preset": "tiny"}, "no mlm head"),
        ({"model": "gau-alpha", "model_preset": "roformer-small"}, "no preset 'roformer-small'"),
    ):
        with pytest.raises(ValueError, match=message):
            run_demo(DemoArgs(output_dir=str(tmp_path / "demo"), **overrides))
        assert not (tmp_path / "demo").exists()
