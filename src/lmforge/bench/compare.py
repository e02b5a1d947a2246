"""``lmforge compare``: a bake-off. Several architectures or variants are pretrained (masked LM, whole-word
masking) on the same prepared shards with the same optimizer, batch and budget, each with several seeds, then
evaluated on the same held-out masked tokens; the result is a table (quality with its seed spread, tokens/s,
activation memory, FLOPs) and a quality-vs-cost plot.

Every run goes through the library's own stages: ``lmforge.data.prepare.prepare_all`` once (the bundled corpus by
default), ``lmforge.train.pretrain.pretrain`` per variant and seed, and ``lmforge.eval.length.evaluate_length``
per run: the held-out split masked once with a fixed seed (the same masked tokens for every variant and seed), at
the training length and at the other ``eval_lengths`` (length generalisation).

Budget: ``tokens`` gives every variant the same steps (same tokens seen); ``flops`` scales each variant's steps so
that steps x analytic training FLOPs per token (``lmforge.bench.flops``) equals the first variant's; ``time``
(``--budget_minutes N``) gives every run N minutes of training: each variant's seconds per step are timed first
(forward + backward + AdamW on a batch of the training shape, the variants in turn, the median of 3 rounds, so
that load drifts hit all alike) and its steps set to fill the budget; the table shows the minutes each run took.

Verdict (modded-nanogpt's rule that a claim needs several seeds): variant A is called better than the reference
(the first variant) only when the difference of mean accuracies exceeds the seed spread, i.e. when their seed
ranges [min, max] do not overlap; otherwise "within seed spread".

Code: the summary over seeds, the verdict, the table and the plot are in ``bench/compare_report.py`` (re-exported
here); the step memory and environment record come from ``bench/measure.py``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from lmforge.bench.compare_report import format_compare, plot_compare, summarize_runs, verdict  # re-exported
from lmforge.bench.flops import train_flops_per_token
from lmforge.bench.measure import environment, step_memory
from lmforge.bench.speed import bench_config

__all__ = ["VARIANTS", "CompareArgs", "compare", "format_compare", "plot_compare", "verdict"]

# name -> (architecture, config overrides on top of the bench shape); the training length fills "{length}".
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "gau-alpha softmax_plus": ("gau-alpha", {"normalization": "softmax_plus"}),
    "gau-alpha squared_relu": ("gau-alpha", {"normalization": "squared_relu"}),
    "flash-quad actual-n": ("flash-quad", {"quad_length": None}),
    "flash-quad fixed-n": ("flash-quad", {"quad_length": "{length}"}),
    "flash": ("flash", {"group_size": 64}),
    "bert": ("bert", {}),
    "roformer": ("bert", {"position_embedding_type": "rotary"}),
}


@dataclass(kw_only=True)
class CompareArgs:
    variants: list[str] = field(
        default_factory=lambda: ["gau-alpha softmax_plus", "gau-alpha squared_relu", "flash", "bert"]
    )
    """Variants (built-in names: see ``VARIANTS``; any registered architecture name works too). The first is the
    reference of the verdicts."""
    custom_variants: dict[str, Any] = field(default_factory=dict)
    """Extra variants as JSON: '{"NAME": {"model": "gau-alpha", "overrides": {"normalization": "squared_relu"}}}'."""
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    """Seeds per variant (model init, masking, data order)."""
    data_dir: str | None = None
    """A `lmforge prepare all` directory to train on (default: prepare the bundled corpus into OUTPUT_DIR/data)."""
    output_dir: str = "runs/compare"
    """Runs go to OUTPUT_DIR/runs/VARIANT/seed-N; NAME.json, NAME.md and NAME.png to OUTPUT_DIR."""
    name: str = "compare"
    """File name stem of the outputs."""
    max_seq_length: int = 128
    """Training length."""
    eval_lengths: list[int] = field(default_factory=lambda: [64, 128, 256])
    """Evaluation lengths (the training length is added); the table reports accuracy at each."""
    eval_max_tokens: int = 32768
    """Held-out tokens evaluated (the same masked tokens for every run)."""
    hidden_size: int = 128
    """Width of every variant."""
    num_layers: int = 2
    """Transformer blocks; GAU stacks get 2x GAU layers (``lmforge.bench.speed.bench_config``)."""
    budget: Literal["tokens", "flops", "time"] = "tokens"
    """tokens: the same steps for every variant; flops: steps scaled to the first variant's training FLOPs; time: the
    same training minutes for every run (set by --budget_minutes)."""
    budget_minutes: float | None = None
    """Training minutes per run (every variant and seed): selects --budget time and sets each variant's steps from
    its timed seconds per step (the FLASH paper's quality-at-equal-time question)."""
    max_steps: int = 250
    """Steps of the reference variant."""
    per_device_train_batch_size: int = 16
    learning_rate: float = 2e-3
    """Peak learning rate (warm-up 10%, cosine to 10%: the demo's AdamW recipe), the same for every variant."""
    threads: int = 2
    """torch CPU threads."""
    plot: bool = True
    """Write the quality-vs-cost plot."""
    report_only: bool = False
    """Only rewrite NAME.md and NAME.png from OUTPUT_DIR/NAME.json (no training)."""
    disable_tqdm: bool = True
    """Disable the progress bars of the training runs."""

    def __post_init__(self) -> None:
        if len(self.seeds) < 2:
            raise ValueError(f"--seeds needs at least 2 seeds to measure a spread, got {self.seeds}")
        if not self.variants:
            raise ValueError("--variants is empty")
        for key in ("max_seq_length", "eval_max_tokens", "hidden_size", "num_layers", "max_steps", "threads"):
            if getattr(self, key) < 1:
                raise ValueError(f"--{key} must be >= 1, got {getattr(self, key)}")
        if self.budget_minutes is not None:
            if not self.budget_minutes > 0:
                raise ValueError(f"--budget_minutes must be > 0, got {self.budget_minutes}")
            self.budget = "time"
        elif self.budget == "time":
            raise ValueError("--budget time needs --budget_minutes N")


def _variant(name: str, args: CompareArgs) -> tuple[str, dict[str, Any]]:
    from lmforge.models.registry import list_models

    if name in args.custom_variants:
        spec = args.custom_variants[name]
        if not isinstance(spec, dict) or "model" not in spec:
            raise ValueError(f"custom variant {name!r} needs a 'model' (and optional 'overrides'), got {spec!r}")
        model, overrides = spec["model"], dict(spec.get("overrides", {}))
    elif name in VARIANTS:
        model, overrides = VARIANTS[name][0], dict(VARIANTS[name][1])
    elif name in list_models():
        model, overrides = name, {}
    else:
        raise ValueError(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}, a registered model or --custom")
    overrides = {k: args.max_seq_length if v == "{length}" else v for k, v in overrides.items()}
    return model, overrides


def _prepare(args: CompareArgs, out: Path) -> Path:
    from lmforge.data.bundled import find_corpus
    from lmforge.data.prepare import PrepareAllArgs, prepare_all

    if args.data_dir is not None:
        return Path(args.data_dir)
    data = out / "data"
    if not (data / "shards" / "validation" / "index.json").is_file():
        files = find_corpus()
        prepare_all(
            PrepareAllArgs(
                input=[str(f) for f in files],
                output_dir=str(data),
                cjk_continuations=False,
                max_seq_length=args.max_seq_length,
                validation_split_percentage=5.0,
                seed=42,
                progress=False,
            )
        )
    return data


def _vocab_size(data: Path) -> int:
    from lmforge.data.tokenizer import load_tokenizer

    return len(load_tokenizer(data / "tokenizer"))


def compare(args: CompareArgs) -> dict[str, Any]:
    """Prepare (once), train every variant x seed, evaluate, write NAME.json/.md/.png; returns the JSON result."""
    if args.report_only:
        out = Path(args.output_dir)
        result = json.loads((out / f"{args.name}.json").read_text(encoding="utf-8"))
        _write_report(result, out, args.name, plot=args.plot)
        return result
    specs = {name: _variant(name, args) for name in args.variants}  # unknown names fail before any work
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, specs)
    finally:
        torch.set_num_threads(threads)


def _run(args: CompareArgs, specs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    from lmforge.models.registry import build_model, config_to_dict

    out = Path(args.output_dir)
    started = time.perf_counter()
    data = _prepare(args, out)
    vocab = _vocab_size(data)
    lengths = sorted({*args.eval_lengths, args.max_seq_length})
    configs, flops = {}, {}
    for name, (model, overrides) in specs.items():
        base = bench_config(model, hidden_size=args.hidden_size, num_layers=args.num_layers, vocab_size=vocab,
                            max_length=max(lengths))  # fmt: skip
        configs[name] = dataclasses.replace(base, **overrides)
        flops[name] = train_flops_per_token(model, configs[name], args.max_seq_length, task="mlm")
    reference = args.variants[0]
    steps = {name: args.max_steps for name in specs}
    if args.budget == "flops":
        missing = [name for name, f in flops.items() if f is None]
        if missing:
            raise ValueError(f"--budget flops needs a FLOP formula for every variant; none for {missing}")
        steps = {name: max(1, round(args.max_steps * flops[reference] / flops[name])) for name in specs}
    seconds_per_step: dict[str, float] = {}
    if args.budget == "time":
        seconds_per_step = time_steps(specs, configs, args)
        steps = {name: max(1, int(args.budget_minutes * 60 / seconds_per_step[name])) for name in specs}

    variants: dict[str, Any] = {}
    for name, (model, _) in specs.items():
        cfg = configs[name]
        torch.manual_seed(0)
        network = build_model(model, task="mlm", config=cfg)
        ids = torch.randint(1, vocab, (args.per_device_train_batch_size, args.max_seq_length))
        memory = step_memory(lambda net=network, x=ids: net(x).logits.float().square().mean().backward(), ids.device)
        params = sum(p.numel() for p in network.parameters())
        del network
        runs = [_train_and_evaluate(args, name, model, cfg, data, seed, steps[name], lengths) for seed in args.seeds]
        variants[name] = {
            "model": model,
            "config": config_to_dict(cfg),
            "params": params,
            "steps": steps[name],
            "train_flops_per_token": flops[name],
            "timed_s_per_step": seconds_per_step.get(name),
            "activation_bytes": memory,
            "runs": runs,
            "summary": summarize_runs(runs, lengths, args.max_seq_length),
        }
    for name, variant in variants.items():
        variant["verdict"] = verdict(variant["summary"], variants[reference]["summary"], is_reference=name == reference)
    env = environment(torch.device("cpu"), args.threads)
    env["total_s"] = time.perf_counter() - started
    result = {"environment": env, "settings": dataclasses.asdict(args), "data": str(data), "eval_lengths": lengths,
              "reference": reference, "variants": variants}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _write_report(result, out, args.name, plot=args.plot)
    return result


def time_steps(
    specs: dict[str, tuple[str, dict[str, Any]]],
    configs: dict[str, Any],
    args: CompareArgs,
    *,
    rounds: int = 3,
    steps: int = 5,
) -> dict[str, float]:
    """Median seconds per training step of every variant (forward, backward, AdamW, zero_grad on a batch of the
    training shape), the variants timed in turn for ``rounds`` rounds after one warm-up step each."""
    import statistics

    from lmforge.models.registry import build_model

    nets, times = {}, {name: [] for name in specs}
    for name, (model, _) in specs.items():
        torch.manual_seed(0)
        network = build_model(model, task="mlm", config=configs[name])
        nets[name] = (network, torch.optim.AdamW(network.parameters(), lr=1e-4))
    vocab = configs[args.variants[0]].vocab_size
    ids = torch.randint(5, vocab, (args.per_device_train_batch_size, args.max_seq_length))
    labels = torch.where(torch.rand(ids.shape) < 0.15, ids, torch.full_like(ids, -100))

    def step(network: Any, optimizer: Any) -> None:
        network(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for network, optimizer in nets.values():
        step(network, optimizer)
    for _ in range(rounds):
        for name, (network, optimizer) in nets.items():
            started = time.perf_counter()
            for _ in range(steps):
                step(network, optimizer)
            times[name].append((time.perf_counter() - started) / steps)
    result = {name: statistics.median(values) for name, values in times.items()}
    print("timed s/step: " + ", ".join(f"{name} {value:.3f}" for name, value in result.items()), flush=True)
    return result


def _write_report(result: dict[str, Any], out: Path, name: str, *, plot: bool) -> None:
    markdown = format_compare(result)
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    print("\n" + markdown, flush=True)
    if plot:
        plot_compare(result, out / f"{name}.png")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in name)


def _train_and_evaluate(
    args: CompareArgs, name: str, model: str, cfg: Any, data: Path, seed: int, steps: int, lengths: list[int]
) -> dict[str, Any]:
    from lmforge.eval.length import LengthArgs, evaluate_length
    from lmforge.models.registry import config_to_dict
    from lmforge.train.config import PretrainArgs
    from lmforge.train.pretrain import pretrain
    from lmforge.train.recipes import OPTIMIZER_RECIPE

    run = Path(args.output_dir) / "runs" / _slug(name) / f"seed-{seed}"
    print(f"== {name}, seed {seed}: {steps} steps -> {run}", flush=True)
    overrides = config_to_dict(cfg)
    results = pretrain(
        PretrainArgs(
            train_dir=str(data),
            output_dir=str(run),
            overwrite_output_dir=True,
            run_name=f"{name} seed {seed}",
            model=model,
            model_preset=None,
            model_overrides=overrides,
            objective="mlm",
            wwm_mode="word",
            max_seq_length=args.max_seq_length,
            per_device_train_batch_size=args.per_device_train_batch_size,
            learning_rate=args.learning_rate,
            **OPTIMIZER_RECIPE,
            max_steps=steps,
            logging_steps=max(1, steps // 10),
            save_steps=steps,
            save_total_limit=1,
            do_eval=False,
            report_to="none",
            seed=seed,
            disable_tqdm=args.disable_tqdm,
        )
    )
    evaluation = evaluate_length(
        LengthArgs(model=str(run), lengths=lengths, max_tokens=args.eval_max_tokens, disable_tqdm=True)
    )
    per_length = {str(row["length"]): row for row in evaluation["results"]}
    return {
        "seed": seed,
        "run_dir": str(run),
        "tokens": results.get("tokens"),
        "train_s": results.get("elapsed_s"),
        "tokens_per_s": results["tokens"] / results["elapsed_s"] if results.get("elapsed_s") else None,
        "accuracy": {n: row["accuracy"] for n, row in per_length.items()},
        "perplexity": {n: row["perplexity"] for n, row in per_length.items()},
    }
