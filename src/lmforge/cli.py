"""The ``lmforge`` command line: one subcommand per pipeline stage, built with jsonargparse from dataclasses.

Each stage is a pair (arguments dataclass, run function) named by import path in ``STAGES`` and imported only
when needed, so ``lmforge --help`` stays fast. The arguments dataclass is the single source of truth: its
fields become flags (``--per_device_train_batch_size``), its attribute docstrings become ``--help`` text, and
every stage accepts ``--config run.yaml`` plus dotted overrides for nested fields (litgpt's jsonargparse CLI).
The library never imports this module.

A ``ValueError`` raised by a stage is a user error: it is printed as one line (``lmforge STAGE: error: ...``)
and the exit status is 2, never a traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
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
        "Fine-tune on CLUE classification, extractive QA (cmrc2018, squad) or token classification (cluener).",
        positional=True,
        precheck="lmforge.tasks.finetune:check_argv",
    ),
    "evaluate": {
        "lm": Stage(
            "lmforge.eval.lm_cli:LMEvalArgs",
            "lmforge.eval.lm_cli:evaluate_lm_run",
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
            "lmforge.eval.clue_cli:ClueEvalArgs",
            "lmforge.eval.clue_cli:evaluate_clue",
            "CLUE dev metrics or test-set leaderboard predictions of a fine-tuned model (lmforge finetune).",
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
        "lmforge.eval.generate_cli:GenerateArgs",
        "lmforge.eval.generate_cli:generate",
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
    parser = ArgumentParser(prog=f"lmforge {name}", description=stage.help)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the options below.")
    parser.add_class_arguments(args_class, nested_key=None, as_group=False, as_positional=stage.positional)
    return parser


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
        namespace: Namespace = parser.parse_args(rest)
        values = namespace.as_dict()
        values.pop("config", None)
        args = _to_dataclass(stage.load(stage.args), values)
        return stage.load(stage.run)(args)
    except ValueError as error:  # a user error: one line, no traceback
        message = str(error).strip().splitlines() or [type(error).__name__]
        print(f"lmforge {name}: error: {' '.join(line.strip() for line in message)}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> None:
    run(argv)
