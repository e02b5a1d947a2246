"""The ``lmforge`` command line: one subcommand per pipeline stage, built with jsonargparse from dataclasses.

Each stage is a pair (arguments dataclass, run function) named by import path in ``STAGES`` and imported only
when needed, so ``lmforge --help`` stays fast. The arguments dataclass is the single source of truth: its
fields become flags (``--per_device_train_batch_size``), its attribute docstrings become ``--help`` text, and
every stage accepts ``--config run.yaml`` plus dotted overrides for nested fields (litgpt's jsonargparse CLI).
The library never imports this module.

A ``ValueError`` raised by a stage is a user error: it is printed as one line (``lmforge STAGE: error: ...``)
and the exit status is 2, never a traceback. Parsing errors are the same one line: an unknown or misspelled flag
names the closest valid ones ("did you mean --learning_rate?"), and abbreviations are off (``--learning_rat`` is an
error, not ``--learning_rate``). List options take the bracket form (``--lengths '[128,512]'``), space-separated
values (``--input a.zip b.zip``: up to the next flag) and comma-separated ones (``--lengths 128,512``).

Ctrl-C is exit status 130 with one line: for a training stage, the step, the last valid checkpoint and the exact
command that resumes (``lmforge.train.loop.TrainingInterrupted``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import json
import shlex
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, set_parsing_settings


@dataclass(frozen=True)
class Stage:
    args: str  # "module:Dataclass"
    run: str  # "module:function"  taking the dataclass instance
    help: str
    positional: bool = False  # required fields of a non-kw_only dataclass become positional (export RUN)
    precheck: str | None = None  # "module:function" called with the raw argv, may raise ValueError

    def load(self, path: str) -> Any:
        module, _, name = path.partition(":")
        return getattr(importlib.import_module(module), name)


STAGES: dict[str, Stage | dict[str, Stage]] = {
    "prepare": {
        "corpus": Stage(
            "lmforge.data.prepare:CorpusArgs",
            "lmforge.data.prepare:prepare_corpus",
            "Raw txt/zip/gz/jsonl inputs -> deduplicated jsonl documents + report.json.",
        ),
        "tokenizer": Stage(
            "lmforge.data.prepare:TokenizerArgs",
            "lmforge.data.prepare:prepare_tokenizer",
            "Build a char vocabulary, byte-level BPE or codepoint tokenizer from jsonl documents.",
        ),
        "shards": Stage(
            "lmforge.data.prepare:ShardsArgs",
            "lmforge.data.prepare:prepare_shards",
            "Tokenize + segment documents into memory-mapped token shards with whole-word flags.",
        ),
        "all": Stage(
            "lmforge.data.prepare:PrepareAllArgs",
            "lmforge.data.prepare:prepare_all",
            "Run corpus -> tokenizer -> shards with sensible defaults.",
        ),
    },
    "pretrain": Stage(
        "lmforge.train.config:PretrainArgs",
        "lmforge.train.pretrain:pretrain",
        "Pretrain a model (masked LM with whole-word masking, or causal LM) on prepared shards.",
        precheck="lmforge.train.config:check_argv",
    ),
    "finetune": Stage(
        "lmforge.tasks.finetune:FinetuneArgs",
        "lmforge.tasks.finetune:finetune",
        "Fine-tune: CLUE classification, C3/CHID multiple choice, QA (cmrc2018, squad, tydi), NER (cluener), SFT.",
        positional=True,
        precheck="lmforge.tasks.finetune:check_argv",
    ),
    "evaluate": {
        "lm": Stage(
            "lmforge.commands.evaluate_lm:LMEvalArgs",
            "lmforge.commands.evaluate_lm:evaluate_lm_run",
            "Held-out masked-LM accuracy / loss / perplexity, or CLM perplexity and degeneration of continuations.",
        ),
        "length": Stage(
            "lmforge.eval.length:LengthArgs",
            "lmforge.eval.length:evaluate_length",
            "MLM accuracy (or perplexity) per evaluation length: table, length.json and length.png.",
            precheck="lmforge.eval.length:check_argv",
        ),
        "probe": Stage(
            "lmforge.eval.probe:ProbeArgs",
            "lmforge.eval.probe:evaluate_probe",
            "Did a masked LM learn? Top-1/top-5 accuracy on bundled cloze sentences with known answers.",
            positional=True,
        ),
        "clue": Stage(
            "lmforge.commands.evaluate_clue:ClueEvalArgs",
            "lmforge.commands.evaluate_clue:evaluate_clue",
            "CLUE dev metrics or test-set leaderboard predictions of a fine-tuned model (lmforge finetune).",
        ),
        "tydi": Stage(
            "lmforge.commands.evaluate_tydi:TydiEvalArgs",
            "lmforge.commands.evaluate_tydi:evaluate_tydi",
            "TyDi QA official-format predictions and tydi_eval.py scores (per language, macro, threshold sweep).",
        ),
    },
    "predict": Stage(
        "lmforge.predict:PredictArgs",
        "lmforge.predict:predict",
        "Run a fine-tuned classifier, tagger or QA model on new text (jsonl or lines, - = stdin) -> jsonl.",
        positional=True,
    ),
    "inspect": Stage(
        "lmforge.eval.inspect:InspectArgs",
        "lmforge.eval.inspect:inspect_run",
        "Per-layer statistics of a run (cosine/relative change between layers, norms, GAU/FLASH sparsity).",
        positional=True,
    ),
    "fill-mask": Stage(
        "lmforge.eval.fill_mask:FillMaskArgs",
        "lmforge.eval.fill_mask:fill_mask",
        "Print the top-k predictions for each [MASK] in a text.",
        positional=True,
    ),
    "generate": Stage(
        "lmforge.commands.generate:GenerateArgs",
        "lmforge.commands.generate:generate",
        "Generate text from a causal LM (KV cache; greedy, top-k/top-p sampling, repetition penalty).",
        positional=True,
    ),
    "bench": {
        "speed": Stage(
            "lmforge.bench.speed:SpeedArgs",
            "lmforge.bench.speed:bench_speed",
            "Forward+backward tokens/s, memory and MFU of every architecture vs its peer: JSON, table, plot.",
        ),
        "flops": Stage(
            "lmforge.bench.flops:FlopsArgs",
            "lmforge.bench.flops:bench_flops",
            "Analytic FLOPs per token per architecture, checked against FlopCounterMode; the matmul peak.",
        ),
    },
    "compare": Stage(
        "lmforge.bench.compare:CompareArgs",
        "lmforge.bench.compare:compare",
        "Train several architectures/variants on the same shards with several seeds: quality vs cost table + plot.",
    ),
    "export": Stage(
        "lmforge.hf.export_args:ExportArgs",
        "lmforge.hf.export:export",
        "Export a run or checkpoint to a Hugging Face directory.",
        positional=True,
    ),
    "demo": Stage(
        "lmforge.demo:DemoArgs",
        "lmforge.demo:run_demo",
        "End-to-end demo on the bundled corpus: prepare -> pretrain -> fill-mask.",
    ),
    "models": Stage(
        "lmforge.cli:ModelsArgs", "lmforge.cli:show_models", "List the registered architectures and their presets."
    ),
}


@dataclass(kw_only=True)
class ModelsArgs:
    name: str | None = None
    """Show the config fields of one preset of this architecture instead of the list."""
    preset: str = "tiny"
    """The preset whose fields to show with --name."""


def show_models(args: ModelsArgs) -> None:
    from lmforge.models.registry import config_to_dict, get_config, list_models

    if args.name is not None:
        for key, value in config_to_dict(get_config(args.name, preset=args.preset)).items():
            print(f"{key:32s} {value}")
        return
    for name, entry in list_models().items():
        tasks = ", ".join(t for t in entry.builders if t != "backbone")
        print(f"{name:12s} presets: {', '.join(entry.presets)}")
        print(f"{'':12s} tasks:   {tasks}")
        if entry.description:
            print(f"{'':12s} {entry.description}")


def _stage_parser(name: str, stage: Stage) -> ArgumentParser:
    # The dataclass attribute docstrings are the --help text (off by default in jsonargparse >= 4.40).
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    args_class = stage.load(stage.args)
    parser = ArgumentParser(prog=f"lmforge {name}", description=stage.help, exit_on_error=False, allow_abbrev=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the options below.")
    parser.add_class_arguments(args_class, nested_key=None, as_group=False, as_positional=stage.positional)
    return parser


def _is_list(hint: Any) -> bool:
    """Whether a field annotation accepts a list (``list[int]``, ``list[str] | str | None``)."""
    if typing.get_origin(hint) is list:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(hint))
    return False


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def normalize_lists(argv: list[str], args_class: type) -> list[str]:
    """``--lengths 128 512``, ``--lengths 128,512`` and ``--input a.zip`` as the JSON list jsonargparse reads
    (``--lengths '["128","512"]'``; it converts the items to the field's type). A list option takes every value up
    to the next flag; a value in brackets (``'[128,512]'``) passes unchanged."""
    hints = typing.get_type_hints(args_class)
    lists = {name for name, hint in hints.items() if _is_list(hint)}
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, has_value, value = token[2:].partition("=") if token.startswith("--") else ("", False, "")
        if name.replace("-", "_") not in lists:
            out.append(token)
            i += 1
            continue
        values = [value] if has_value else []
        i += 1
        while not has_value and i < len(argv) and (not argv[i].startswith("-") or _is_number(argv[i])):
            values.append(argv[i])
            i += 1
        if len(values) == 1 and values[0].lstrip().startswith("["):
            out += [f"--{name}", values[0]]
        elif values:
            items = [item.strip() for v in values for item in v.split(",") if item.strip()]
            out += [f"--{name}", json.dumps(items, ensure_ascii=False)]
        else:
            out.append(f"--{name}")  # no value: jsonargparse says so
    return out


def _flag_error(parser: ArgumentParser, error: argparse.ArgumentError, argv: list[str]) -> str:
    """One line for a parsing error; an unknown flag names the closest valid ones."""
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if "unrecognized arguments" not in message:
        return message
    valid = sorted(option for option in parser._option_string_actions if option.startswith("--"))
    unknown = [token.split("=", 1)[0] for token in argv if token.startswith("--")]
    unknown = [token for token in unknown if token not in valid]
    if not unknown:
        return message
    parts = []
    for token in unknown:
        close = difflib.get_close_matches(token.replace("-", "_").replace("__", "--", 1), valid, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        parts.append(f"unknown option {token}{hint}")
    return ", ".join(parts) + "; --help lists the options"


def resume_command(argv: Sequence[str]) -> str:
    """The command line that continues an interrupted run: ``argv`` with ``--resume_from_checkpoint auto`` and
    without ``--overwrite_output_dir``."""
    out: list[str] = []
    skip = False
    for i, token in enumerate(argv):
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0].replace("-", "_")
        if name in ("__resume_from_checkpoint", "__overwrite_output_dir"):
            following = argv[i + 1] if i + 1 < len(argv) else None
            skip = "=" not in token and following is not None and not following.startswith("--")
            continue
        out.append(token)
    return shlex.join(["lmforge", *out, "--resume_from_checkpoint", "auto"])


def _leaves(stages: dict[str, Stage | dict[str, Stage]]) -> dict[tuple[str, ...], Stage]:
    out: dict[tuple[str, ...], Stage] = {}
    for name, value in stages.items():
        if isinstance(value, Stage):
            out[(name,)] = value
        else:
            for sub, stage in value.items():
                out[(name, sub)] = stage
    return out


def _top_help() -> str:
    lines = ["usage: lmforge STAGE [options]   (lmforge STAGE --help for the options of one stage)", "", "stages:"]
    for name, value in STAGES.items():
        if isinstance(value, Stage):
            lines.append(f"  {name:18s} {value.help}")
        else:
            for sub, stage in value.items():
                lines.append(f"  {name + ' ' + sub:18s} {stage.help}")
    return "\n".join(lines)


def _to_dataclass(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate ``cls`` from parsed values, recursing into nested dataclass fields."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        if isinstance(f.type, type) and dataclasses.is_dataclass(f.type) and isinstance(value, dict):
            value = _to_dataclass(f.type, value)
        kwargs[f.name] = value
    return cls(**kwargs)


def run(argv: Sequence[str] | None = None) -> Any:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the stage and return its result."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_help())
        return None
    if argv[0] in ("-V", "--version"):
        from lmforge import __version__

        print(f"lmforge {__version__}")
        return None
    leaves = _leaves(STAGES)
    key = tuple(argv[:2]) if tuple(argv[:2]) in leaves else tuple(argv[:1])
    if key not in leaves:
        group = STAGES.get(argv[0])
        if isinstance(group, dict):
            print(f"usage: lmforge {argv[0]} {{{','.join(group)}}} [options]")
            for sub, stage in group.items():
                print(f"  {sub:10s} {stage.help}")
            return None
        raise SystemExit(f"lmforge: error: unknown stage {argv[0]!r}; choose from {', '.join(STAGES)}")
    stage = leaves[key]
    name = " ".join(key)
    rest = argv[len(key) :]
    try:
        if stage.precheck is not None:
            stage.load(stage.precheck)(rest)
        parser = _stage_parser(name, stage)
        args_class = stage.load(stage.args)
        parsed = normalize_lists(rest, args_class)
        try:
            namespace: Namespace = parser.parse_args(parsed)
        except argparse.ArgumentError as error:
            raise ValueError(_flag_error(parser, error, parsed)) from None
        values = namespace.as_dict()
        values.pop("config", None)
        args = _to_dataclass(args_class, values)
        return stage.load(stage.run)(args)
    except ValueError as error:  # a user error: one line, no traceback
        message = str(error).strip().splitlines() or [type(error).__name__]
        print(f"lmforge {name}: error: {' '.join(line.strip() for line in message)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as interrupt:  # Ctrl-C: one line, status 130 (128 + SIGINT)
        step, checkpoint = getattr(interrupt, "step", None), getattr(interrupt, "checkpoint", None)
        if step is None:
            print(f"lmforge {name}: interrupted", file=sys.stderr)
        else:
            saved = f"last valid checkpoint {checkpoint}" if checkpoint else "no checkpoint saved yet"
            print(f"lmforge {name}: interrupted at step {step}; {saved}; resume with: {resume_command(argv)}",
                  file=sys.stderr)  # fmt: skip
        raise SystemExit(130) from None


def main(argv: Sequence[str] | None = None) -> None:
    run(argv)
