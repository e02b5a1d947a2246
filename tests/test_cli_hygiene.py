"""Command-line parsing as a user types it: list forms, no abbreviations, did-you-mean, --version, resume command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lmforge import __version__, cli
from lmforge.bench.speed import SpeedArgs
from lmforge.data.prepare import CorpusArgs


def _parse(stage: tuple[str, ...], argv: list[str], args_class: type):
    leaf = cli._leaves(cli.STAGES)[stage]
    return cli._stage_parser(" ".join(stage), leaf).parse_args(cli.normalize_lists(argv, args_class))


@pytest.mark.parametrize(
    "argv",
    [
        ["--input", "a.zip", "b.zip", "c.txt"],
        ["--input", "a.zip,b.zip,c.txt"],
        ["--input", "[a.zip,b.zip,c.txt]"],
        ["--input", "a.zip", "b.zip,c.txt"],
        ["--input=a.zip,b.zip,c.txt"],
    ],
    ids=["spaces", "commas", "brackets", "mixed", "equals"],
)
def test_list_option_forms(argv: list[str]) -> None:
    values = _parse(("prepare", "corpus"), [*argv, "--output_dir", "out"], CorpusArgs)
    assert values.input == ["a.zip", "b.zip", "c.txt"] and values.output_dir == "out"


def test_one_value_of_a_list_option_and_typed_items() -> None:
    values = _parse(("bench", "speed"), ["--dtypes", "float32", "--lengths", "128,512"], SpeedArgs)
    assert values.dtypes == ["float32"] and values.lengths == [128, 512]
    values = _parse(("bench", "speed"), ["--lengths", "128", "512", "--dtypes", "float32", "bfloat16"], SpeedArgs)
    assert values.lengths == [128, 512] and values.dtypes == ["float32", "bfloat16"]
    assert _parse(("bench", "speed"), ["--lengths", "[64, 256]"], SpeedArgs).lengths == [64, 256]


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "usage:" not in captured.out + err, err  # one line, no usage dump
    return err


def test_abbreviations_are_errors_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(["pretrain", "--learning_rat", "1e-3"], capsys)
    assert err.startswith("lmforge pretrain: error: unknown option --learning_rat")
    assert "did you mean --learning_rate?" in err


def test_misspelled_flags_name_the_closest_ones(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(["pretrain", "--per_device_train_bach_size", "8", "--frobnicate", "1"], capsys)
    assert "did you mean --per_device_train_batch_size " in err and "unknown option --frobnicate;" in err
    err = _error(["models", "--nmae", "bert"], capsys)
    assert "did you mean --name?" in err


def test_a_bad_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(["bench", "speed", "--lengths", "many"], capsys)
    assert "lengths" in err and "many" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"lmforge {__version__}"
    result = subprocess.run([sys.executable, "-m", "lmforge", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"lmforge {__version__}"


def test_resume_command_replaces_resume_and_overwrite_flags() -> None:
    argv = ["pretrain", "--train_dir", "d d", "--overwrite_output_dir", "true", "--resume_from_checkpoint", "x"]
    assert cli.resume_command(argv) == "lmforge pretrain --train_dir 'd d' --resume_from_checkpoint auto"
    argv = ["finetune", "tnews", "--overwrite_output_dir", "--fp16", "true"]
    assert cli.resume_command(argv) == "lmforge finetune tnews --fp16 true --resume_from_checkpoint auto"


def test_no_library_package_imports_the_commands() -> None:
    """``lmforge.commands`` is command glue: only ``cli.py`` (and the commands themselves) may import it."""
    import ast
    from pathlib import Path

    root = Path(cli.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if (path.name == "cli.py" and path.parent == root) or path.parent.name == "commands":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "lmforge.commands" or n.startswith("lmforge.commands.") for n in names):
                offenders.append(str(path.relative_to(root)))
    assert not offenders, offenders
