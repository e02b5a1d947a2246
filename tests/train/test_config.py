"""``PretrainArgs`` and ``check_argv``: the HF/FLASHQuad command lines parse; unsupported HF flags say why."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from lmforge import cli
from lmforge.train.config import UNSUPPORTED_HF_FLAGS, PretrainArgs, check_argv

# The FLASHQuad README's run_mlm_wwm.py call (architectures.md §2), program name and data paths changed.
SEED_COMMAND = (
    "--model_name_or_path bert --tokenizer_name DATA/tokenizer --train_file DATA "
    "--validation_split_percentage 5 --max_seq_length 512 --per_device_train_batch_size 32 "
    "--gradient_accumulation_steps 4 --learning_rate 1e-4 --weight_decay 0.01 --adam_epsilon 1e-6 "
    "--max_steps 250000 --warmup_steps 5000 --logging_steps 100 --save_steps 5000 --save_total_limit 3 "
    "--max_grad_norm 3.0 --fp16 --output_dir OUT --do_train --do_eval --seed 42 "
    "--preprocessing_num_workers 8 --dataloader_num_workers 4"
)


def _parse(argv: list[str]) -> PretrainArgs:
    check_argv(argv)
    stage = cli.STAGES["pretrain"]
    values = cli._stage_parser("pretrain", stage).parse_args(argv).as_dict()
    values.pop("config", None)
    return cli._to_dataclass(PretrainArgs, values)


def test_seed_command_parses() -> None:
    args = _parse(shlex.split(SEED_COMMAND))
    assert args.fp16 and args.do_train and args.do_eval
    assert args.per_device_train_batch_size == 32 and args.gradient_accumulation_steps == 4
    assert args.learning_rate == 1e-4 and args.adam_epsilon == 1e-6 and args.max_grad_norm == 3.0
    assert args.train_file == "DATA" and args.tokenizer_name == "DATA/tokenizer" and args.save_total_limit == 3


def test_bare_boolean_flags_are_normalised_in_place() -> None:
    argv = ["--fp16", "--do_eval", "false", "--bf16=false", "--disable_tqdm"]
    check_argv(argv)
    assert argv == ["--fp16", "true", "--do_eval", "false", "--bf16=false", "--disable_tqdm", "true"]


@pytest.mark.parametrize("flag", ["--deepspeed", "--push_to_hub", "--dataset_name=wikitext", "--pad_to_max_length"])
def test_unsupported_hf_flags_say_why(flag: str) -> None:
    name = flag[2:].split("=")[0]
    with pytest.raises(ValueError, match=f"--{name} is not supported") as error:
        check_argv([flag, "x"])
    assert UNSUPPORTED_HF_FLAGS[name] in str(error.value)


def test_cli_prints_unsupported_flag_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["pretrain", "--deepspeed", "ds.json"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "deepspeed" in err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size"),
        ({"fp16": True, "bf16": True}, "exclusive"),
        ({"max_steps": 0}, "max_steps"),
        ({"mlm_probability": 1.5}, "mlm_probability"),
        ({"train_dir": "a", "train_file": "b"}, "disagree"),
    ],
)
def test_invalid_values_are_value_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PretrainArgs(**kwargs)


def test_every_shipped_config_validates() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted((root / "pretrain").glob("*.yaml")) + sorted((root / "tiny").glob("*.yaml"))
    assert files, "configs/pretrain and configs/tiny ship YAML recipes"
    for file in files:
        args = _parse(["--config", str(file)])
        assert isinstance(args, PretrainArgs), file
        assert set(yaml.safe_load(file.read_text())) <= set(PretrainArgs.__dataclass_fields__), file
