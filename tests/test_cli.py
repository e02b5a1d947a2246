"""The command line: every stage's --help, user errors as one line, --config files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lmforge import cli


def _leaf_names() -> list[list[str]]:
    return [list(key) for key in cli._leaves(cli.STAGES)]


def test_top_level_help_lists_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["--help"])
    out = capsys.readouterr().out
    for stage in (
        "prepare corpus",
        "prepare all",
        "pretrain",
        "finetune",
        "evaluate lm",
        "evaluate length",
        "fill-mask",
        "generate",
        "bench",
        "export",
        "demo",
        "models",
    ):
        assert stage in out


@pytest.mark.parametrize("stage", _leaf_names(), ids=" ".join)
def test_every_stage_has_help(stage: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*stage, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"lmforge {' '.join(stage)}" in out and "--config" in out


def test_help_shows_the_field_docstrings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert "Sequences per device per micro-step." in out


def test_group_without_substage_lists_its_substages(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["prepare"])
    out = capsys.readouterr().out
    assert "corpus" in out and "tokenizer" in out and "shards" in out


def test_evaluate_lists_its_substages_and_clue_asks_for_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["evaluate"])
    out = capsys.readouterr().out
    assert "lm" in out and "length" in out and "clue" in out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "clue"])
    assert exit_info.value.code == 2 and "pass --model" in capsys.readouterr().err


def test_models_lists_registered_architectures(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["models"])
    out = capsys.readouterr().out
    assert "bert" in out and "tiny" in out
    gau_alpha = next(line for line in out.splitlines() if line.startswith("gau-alpha"))
    assert "demo" in gau_alpha.split("presets:")[1]  # the demo's model shape is a registered preset


def test_config_file_and_flags(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("name: bert\npreset: small\n")
    cli.main(["models", "--config", str(config)])
    small = capsys.readouterr().out
    assert "hidden_size" in small
    cli.main(["models", "--config", str(config), "--preset", "tiny"])  # a flag after --config overrides it
    tiny = capsys.readouterr().out
    assert tiny != small


def test_user_error_is_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["models", "--name", "no-such-model"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("lmforge models: error:") and "no-such-model" in err


def test_unknown_stage_is_an_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["frobnicate"])
    assert "unknown stage" in str(exit_info.value.code)


def test_module_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "lmforge", "--help"], capture_output=True, text=True, check=True)
    assert "pretrain" in result.stdout
