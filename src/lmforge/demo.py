"""``lmforge demo``: the whole pipeline on the bundled corpus in a few minutes on a laptop CPU.

1. prepare ``data/corpus/*.jsonl`` (repository root, or ``$LMFORGE_DATA``): ingest, char tokenizer (without CJK
   ``##`` continuation entries), rjieba word segmentation, MLM shards of at most ``--max_seq_length`` tokens;
2. pretrain a GAU-alpha encoder (``--model gau-alpha``: post-norm gated attention units with softmax_plus and RoPE;
   any registered masked LM via ``--model``/``--model_preset``) with whole-word masking (AdamW, warm-up + cosine),
   logging to the run directory (config.yaml, env.json, metrics.jsonl, TensorBoard, loss.png, checkpoints);
3. print the top-k fill-mask predictions for a sentence with two [MASK]s, with their probabilities, and the
   cloze probe's top-1/top-5 (``lmforge.eval.probe``: 64 bundled sentences with known answers) of the trained
   model next to those of the same model before training (the seeded random init pretraining started from);
4. check that the training loss fell (mean of the last logged window vs the first) and say so; if it did not,
   the demo fails with a ``ValueError``;
5. fine-tune the pretrained encoder on the bundled labelled split ``data/clue/lo_topic`` (help sentence ->
   LibreOffice module, 8 classes, TNEWS format; ``lmforge finetune``) and print its dev accuracy next to the
   majority-class baseline (``--finetune_task none`` skips it).

Size: GAU-alpha ``--model_preset demo`` (a registered preset, ``lmforge models``: the small preset's recipe at
hidden 128, 4 GAU layers, e=256, s=64, no dropout), 250 steps of 32 x 128 tokens on one thread: a few minutes on a
2-core machine shared with other jobs (measured in ``docs/architectures/gau-alpha.md``). ``--max_steps`` and the
model/batch options shrink it (the test suite runs it in seconds). Nothing is downloaded.

One thread by default: on a 2-core machine that other jobs also use, two OpenMP threads spin-wait for each other
and a training step took 3.3x longer than on one thread (9.5 s vs 2.9 s, measured with GAU-alpha small); on an
otherwise idle machine ``--num_threads 2`` is up to 2x faster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.data.bundled import find_corpus
from lmforge.train.recipes import OPTIMIZER_RECIPE

__all__ = ["DEFAULT_TEXT", "OPTIMIZER_RECIPE", "DemoArgs", "find_corpus", "run_demo"]

DEFAULT_TEXT = "天气预报说今天的天[MASK]很好，那么我[MASK]一起去公园玩吧！"


@dataclass(kw_only=True)
class DemoArgs:
    output_dir: str = "runs/demo"
    """Run directory (prepared data goes to OUTPUT_DIR/data); an earlier demo run there is replaced."""
    data_dir: str | None = None
    """Directory holding corpus/*.jsonl (default: $LMFORGE_DATA, else the repository's data/)."""
    max_steps: int = 250
    """Optimizer steps (about 1.1 s each for the default model on 2 otherwise idle CPU cores)."""
    model: str = "gau-alpha"
    """Registered masked-LM architecture (`lmforge models`): gau-alpha, bert, flash-quad, flash."""
    model_preset: str = "demo"
    """Preset of --model. "demo" (gau-alpha): the small preset at hidden 128, 4 GAU layers, e=256, s=64, no
    dropout, sized for the time budget; "small" is 8 layers at hidden 256, "tiny" a smoke run; with --model bert,
    roformer-small is the RoFormer baseline."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields to override on top of the preset, e.g. '{"num_hidden_layers": 2}'."""
    max_seq_length: int = 128
    """Tokens per training sequence."""
    per_device_train_batch_size: int = 32
    """Sequences per step."""
    learning_rate: float = 3e-3
    """Peak learning rate (warm-up over the first 10% of the steps, then cosine to 10%); 3e-3 suits the default
    GAU-alpha, 1e-3 the bert roformer-small baseline."""
    max_documents: int | None = None
    """Use only the first N documents of each corpus file (a faster, smaller demo)."""
    text: str = DEFAULT_TEXT
    """Sentence to fill; every [MASK] gets its top-k predictions."""
    top_k: int = 5
    """Predictions shown per [MASK]."""
    seed: int = 42
    """Seed of data shuffling, masking, initialisation and dropout."""
    disable_tqdm: bool = False
    """Disable the progress bar."""
    num_threads: int | None = 1
    """torch CPU threads for the whole demo (None: torch's default, one per core); see the module docstring."""
    finetune_task: str = "lo_topic"
    """Bundled labelled split under DATA/clue/ to fine-tune on after pretraining (lo_topic, poem_genre; none: skip)."""
    finetune_epochs: float = 2.0
    """Epochs of the fine-tuning step."""
    finetune_learning_rate: float = 1e-3
    """Peak learning rate of the fine-tuning step (warm-up 10%, linear decay)."""
    finetune_max_train_samples: int | None = None
    """Fine-tune on the first N training examples only (a faster demo)."""


def _first_documents(files: list[Path], count: int, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    subset = []
    for file in files:
        target = out / file.name
        with open(file, encoding="utf-8") as source, open(target, "w", encoding="utf-8") as sink:
            for i, line in enumerate(source):
                if i >= count:
                    break
                sink.write(line)
        subset.append(target)
    return subset


def run_demo(args: DemoArgs) -> dict[str, Any]:
    """Run the four steps above; returns timings, the loss curve ends and the predictions."""
    from lmforge.models.registry import get_entry
    from lmforge.utils import torch_threads

    if args.max_steps < 2:
        raise ValueError(f"--max_steps must be >= 2 to see the loss move, got {args.max_steps}")
    entry = get_entry(args.model)  # before minutes of data preparation: a wrong name or preset fails now
    if "mlm" not in entry.builders:
        tasks = sorted(entry.builders)
        raise ValueError(f"the demo trains a masked LM; {args.model!r} has no mlm head (tasks: {tasks})")
    if args.model_preset not in entry.presets:
        raise ValueError(f"{args.model!r} has no preset {args.model_preset!r}; choose from {sorted(entry.presets)}")
    with torch_threads(args.num_threads, flag="--num_threads"):
        return _run(args)


def _run(args: DemoArgs) -> dict[str, Any]:
    from lmforge.data.prepare import PrepareAllArgs, prepare_all
    from lmforge.data.tokenizer import load_tokenizer
    from lmforge.eval.fill_mask import format_predictions, predict_masks
    from lmforge.train.checkpoint import TOKENIZER_DIR, load_model, resolve_checkpoint
    from lmforge.train.config import PretrainArgs
    from lmforge.train.metrics import read_metrics
    from lmforge.train.pretrain import pretrain

    out = Path(args.output_dir)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    print("== 1/5 prepare the bundled corpus", flush=True)
    files = find_corpus(args.data_dir)
    if args.max_documents is not None:
        files = _first_documents(files, args.max_documents, out / "data" / "subset")
    data = out / "data"
    # No "##X" entries for CJK characters: they are never produced for Chinese text by a char tokenizer, and
    # halving the vocabulary halves the cost of the MLM decoder, the largest matmul of this small model.
    prepare_all(
        PrepareAllArgs(
            input=[str(f) for f in files],
            output_dir=str(data),
            cjk_continuations=False,
            max_seq_length=args.max_seq_length,
            validation_split_percentage=2.0,
            seed=args.seed,
            progress=not args.disable_tqdm,
        )
    )
    timings["prepare_s"] = time.perf_counter() - started

    print(f"== 2/5 pretrain {args.model}/{args.model_preset} with whole-word masking", flush=True)
    steps = args.max_steps
    results = pretrain(
        PretrainArgs(
            train_dir=str(data),
            output_dir=str(out),
            overwrite_output_dir=True,
            model=args.model,
            model_preset=args.model_preset,
            model_overrides=dict(args.model_overrides),
            objective="mlm",
            wwm_mode="word",
            max_seq_length=args.max_seq_length,
            per_device_train_batch_size=args.per_device_train_batch_size,
            per_device_eval_batch_size=64,
            learning_rate=args.learning_rate,
            **OPTIMIZER_RECIPE,
            max_steps=steps,
            logging_steps=max(1, steps // 30),
            eval_steps=max(1, steps // 3),
            save_steps=max(1, steps // 2),
            save_total_limit=1,
            max_eval_samples=256,
            seed=args.seed,
            disable_tqdm=args.disable_tqdm,
        )
    )
    timings["pretrain_s"] = time.perf_counter() - started - timings["prepare_s"]

    print("== 3/5 fill-mask", flush=True)
    checkpoint = resolve_checkpoint(out)
    model = load_model(checkpoint)
    predictions = predict_masks(model, load_tokenizer(checkpoint / TOKENIZER_DIR), args.text, top_k=args.top_k)
    print(format_predictions(args.text, predictions), flush=True)
    probe = _probe_step(args, checkpoint, model)

    print("== 4/5 did the loss fall?", flush=True)
    losses = [r["train_loss"] for r in read_metrics(out) if isinstance(r.get("train_loss"), float)]
    window = max(1, len(losses) // 5)
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    if not last < 0.9 * first:
        raise ValueError(f"the training loss did not fall: {first:.3f} at the start, {last:.3f} at the end")
    print(
        f"yes: the training loss fell from {first:.3f} to {last:.3f} ({100 * (last - first) / first:+.0f}%); "
        f"held-out MLM accuracy {results.get('eval_accuracy', float('nan')):.3f}.",
        flush=True,
    )

    finetuned = _finetune_step(args, out, files)
    timings["finetune_s"] = time.perf_counter() - started - timings["prepare_s"] - timings["pretrain_s"]
    timings["total_s"] = time.perf_counter() - started
    print(
        f"run directory: {out} (loss.png, metrics.jsonl, tensorboard/, {checkpoint.name}/); "
        f'try: lmforge fill-mask {out} "...[MASK]..."\n'
        f"wall time: prepare {timings['prepare_s']:.0f} s, pretrain {timings['pretrain_s']:.0f} s, "
        f"fine-tune {timings['finetune_s']:.0f} s, total {timings['total_s']:.0f} s",
        flush=True,
    )
    return {"timings": timings, "first_loss": first, "last_loss": last, "predictions": predictions,
            "probe": probe, "finetune": finetuned, **results}  # fmt: skip


def _probe_step(args: DemoArgs, checkpoint: Path, model: Any) -> dict[str, dict[str, Any]]:
    """The cloze probe of the trained model and of the same model before training: the seeded random init that
    pretraining started from (``pretrain`` seeds with ``--seed`` right before building it)."""
    import torch

    from lmforge.eval.probe import format_probe, load_probe, score_probe
    from lmforge.models.loading import load_model as resolve
    from lmforge.models.registry import build_model

    loaded = resolve(str(checkpoint), task="mlm", with_tokenizer=True, quiet=True)
    items = load_probe()
    with torch.random.fork_rng(devices=[]):  # the global RNG is untouched: fine-tuning below sees the same state
        torch.manual_seed(args.seed)
        untrained = build_model(loaded.arch, task="mlm", config=loaded.config).eval()
    trained_result = score_probe(model, loaded.tokenizer, items)
    untrained_result = score_probe(untrained, loaded.tokenizer, items)
    masks = trained_result["probe_masks"]
    hits = {name: round(r.get("probe_top5", 0.0) * masks) for name, r in (("after", trained_result),
                                                                           ("before", untrained_result))}  # fmt: skip
    if hits["after"] >= hits["before"] + 3 and trained_result.get("probe_top1", 0.0) > 0:
        verdict = "pretraining taught it some words the probe checks"
    else:
        verdict = "no real gain yet: it has not learned the words the probe checks"
        if trained_result.get("probe_punctuation", 0.0) > 0.5:
            verdict += " (most guesses are punctuation: the loss fell mostly by learning which characters are frequent)"
        verdict += (
            ". The demo's budget is too small to show what pretraining buys (measured: 250 steps on the LibreOffice "
            "help score 3.4 points below random init on lo_topic with 200 labels). configs/recipes/"
            "gau-alpha-domain.yaml pretrains this model 3,000 steps (15-35 min on one core) on that text alone and "
            "beats random init by +5.1 points on lo_topic and +5.4 with 200 labels (mean of 3 pretraining runs x 3 "
            "fine-tuning seeds; benchmarks/quality.md)"
        )
    print(
        f"cloze probe: {len(items)} sentences with known answers, top-5 = the answer among the 5 best guesses "
        f"(chance about {5 / len(loaded.tokenizer):.4f}); lmforge evaluate probe {args.output_dir} shows them\n"
        f"  after {args.max_steps} steps:  {format_probe(trained_result)}\n"
        f"  before training: {format_probe(untrained_result)}\n"
        f"  top-5 hits {hits['after']}/{masks} vs {hits['before']}/{masks} before training: {verdict}.",
        flush=True,
    )
    return {"trained": trained_result, "random_init": untrained_result}


def _finetune_step(args: DemoArgs, out: Path, corpus_files: list[Path]) -> dict[str, Any] | None:
    """Step 5: fine-tune the pretrained run on a bundled labelled split; dev accuracy vs the majority class."""
    from lmforge.tasks.finetune import FinetuneArgs, finetune

    if args.finetune_task == "none":
        print("== 5/5 fine-tuning skipped (--finetune_task none)", flush=True)
        return None
    data = corpus_files[0].parent.parent / "clue" / args.finetune_task
    if not data.is_dir():  # a --max_documents subset lives elsewhere: the labelled splits are next to the corpus
        data = find_corpus(args.data_dir)[0].parent.parent / "clue" / args.finetune_task
    print(f"== 5/5 fine-tune on {data.name} (bundled labelled split)", flush=True)
    report = finetune(
        FinetuneArgs(
            "classification", model=str(out), data_dir=str(data), output_dir=str(out / f"finetune-{data.name}"),
            overwrite_output_dir=True, max_seq_length=64, per_device_train_batch_size=32,
            learning_rate=args.finetune_learning_rate, num_train_epochs=args.finetune_epochs,
            max_train_samples=args.finetune_max_train_samples, warmup_ratio=0.1, logging_steps=20,
            classifier_dropout=0.1, seed=args.seed, disable_tqdm=args.disable_tqdm,
        )
    )  # fmt: skip
    dev = report["dev"]
    print(
        f"{data.name}: dev accuracy {dev['accuracy']:.3f} vs the majority-class baseline "
        f"{dev['majority_baseline_accuracy']:.3f} ({len(report['labels'])} classes, "
        f"{report['counts']['dev']['examples']} dev examples); run directory: {out / f'finetune-{data.name}'}",
        flush=True,
    )
    return report
