"""Time to quality: held-out MLM accuracy against wall-clock time, lmforge's recipe vs the recipe a user runs today
(transformers ``Trainer`` + ``BertForMaskedLM`` + ``DataCollatorForLanguageModeling``), end to end including data
preparation (issue 16, item 2).

Arms (``--arms``; each its own process, one thread, so that two lanes can run side by side on a 2-core machine and
meet the same load):

- ``peer``: what ``run_mlm.py`` does with its documented defaults: the train documents concatenated and cut into
  blocks of ``--seq_length`` (``group_texts``), 15% token masking (80/10/10), AdamW lr 5e-5, batch 8, linear decay
  without warm-up, weight decay 0, BERT's dropout 0.1. The step count is set so the linear schedule ends at the
  arm's budget (the best a user who knew the budget could do with these defaults).
- ``peer-tuned``: the same Trainer, collator and model with lmforge's optimizer recipe (lr, batch, warm-up,
  cosine, weight decay, no dropout): separates what the recipe buys from what the implementation buys.
- ``lmforge-bert``: ``lmforge pretrain`` of the same BERT (same config through our converter) with packed
  shards, whole-word masking and the demo's optimizer recipe.
- ``lmforge-gau``: ``lmforge pretrain`` of GAU-alpha at the same width (two GAU layers per BERT block).
- any registered architecture name (``flash``, ``flash-quad``, ...): its bench shape at the same width, lmforge's
  recipe (item 2(c): each architecture at equal wall-clock).

All arms see the same text (the train split of one ``lmforge prepare all``; the peer re-tokenizes that split's
documents with ``AutoTokenizer`` on the same tokenizer files, timed as its data preparation), the same tokenizer,
sequence length and width. Checkpoints are taken every ``--eval_every_minutes`` of training time (the peer: a
callback on wall time; lmforge: ``--save_steps`` from the calibrated s/step) and all are evaluated afterwards with
one evaluator on the held-out split: masked positions fixed by seed, identical for every arm and checkpoint,
(a) 15% of tokens masked independently (the peer's own objective) and (b) 15% of whole words (lmforge's).
Peer checkpoints are Hugging Face directories read through lmforge's one loader (``model_type bert``).

Time axis: data preparation + training-loop wall time up to the checkpoint (saving and evaluation excluded for
both). ``minutes to reach the peer's final accuracy`` interpolates linearly between the two checkpoints around it.

Usage::

    python benchmarks/time_to_quality.py --stages prepare,calibrate --arms peer,lmforge-bert,lmforge-gau,peer-tuned
    python benchmarks/time_to_quality.py --stages train --arms peer --minutes 60 &   # lane 1
    python benchmarks/time_to_quality.py --stages train --arms lmforge-bert,lmforge-gau --minutes 30   # lane 2
    python benchmarks/time_to_quality.py --stages evaluate,report --json benchmarks/time_to_quality.json
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
LMFORGE_ARCHS = {"lmforge-bert": "bert", "lmforge-gau": "gau-alpha"}
LMFORGE_RECIPE = dict(weight_decay=0.01, adam_beta2=0.98, adam_epsilon=1e-6, lr_scheduler_type="cosine",
                      warmup_ratio=0.1, min_lr_ratio=0.1)  # fmt: skip  # lmforge.demo.OPTIMIZER_RECIPE


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


# ---------------------------------------------------------------- data


def stage_prepare(args: argparse.Namespace, work: Path) -> None:
    from lmforge.data.prepare import PrepareAllArgs, prepare_all

    started = time.perf_counter()
    files = sorted((ROOT / "data" / "corpus").glob("*.jsonl"))
    shutil.rmtree(work / "data", ignore_errors=True)
    prepare_all(
        PrepareAllArgs(input=[str(f) for f in files], output_dir=str(work / "data"), cjk_continuations=False,
                       max_seq_length=args.seq_length, validation_split_percentage=args.validation_percent,
                       seed=42, progress=False)
    )  # fmt: skip
    corpus = {f.name: f.stat().st_size for f in files}
    record(work, "prepare", {"wall_s": time.perf_counter() - started, "corpus": corpus})


def train_texts(data: Path, percent: float, seed: int = 42) -> list[str]:
    """The documents of ``prepare all``'s train split, by the shard stage's rule (``shard_stage._encode_range``):
    a document is held out when the seeded blake2b hash of its UTF-8 text falls below the percentage."""
    threshold, key = int(percent / 100 * 2**64), str(seed).encode()[:64]
    texts = []
    for part in sorted((data / "corpus").glob("part-*.jsonl")):
        for line in part.read_text(encoding="utf-8").splitlines():
            if line.strip():
                text = json.loads(line)["text"]
                digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=key).digest()
                if int.from_bytes(digest) >= threshold:
                    texts.append(text)
    return texts


def peer_dataset(data: Path, args: argparse.Namespace) -> tuple[Any, list[list[int]], float]:
    """run_mlm.py's data path: tokenize every document, concatenate, cut into full blocks (the remainder dropped)."""
    from transformers import AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(data / "tokenizer"))
    texts = train_texts(data, args.validation_percent)
    ids = tokenizer(texts, return_special_tokens_mask=False)["input_ids"]
    flat = [i for row in ids for i in row]
    block = args.seq_length
    blocks = [flat[i : i + block] for i in range(0, len(flat) - block + 1, block)]
    return tokenizer, blocks, time.perf_counter() - started


# ---------------------------------------------------------------- training


def bert_config(args: argparse.Namespace, vocab: int) -> Any:
    from lmforge.models.registry import get_config

    return get_config("bert", preset="small", vocab_size=vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                      num_attention_heads=max(1, args.hidden // 64), intermediate_size=4 * args.hidden,
                      max_position_embeddings=max(512, args.seq_length))  # fmt: skip


def vocab_size(data: Path) -> int:
    from lmforge.data.tokenizer import load_tokenizer

    return len(load_tokenizer(data / "tokenizer"))


def train_peer(args: argparse.Namespace, work: Path, arm: str) -> float | None:
    import dataclasses

    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    from lmforge.hf.peers import hf_peer

    data, out = work / "data", work / "runs" / arm
    shutil.rmtree(out, ignore_errors=True)
    tokenizer, blocks, prep_s = peer_dataset(data, args)
    log(f"{arm}: {len(blocks)} blocks of {args.seq_length} tokens, data preparation {prep_s:.1f} s")
    tuned = arm == "peer-tuned"
    config = bert_config(args, len(tokenizer))
    if not tuned:  # BertConfig's documented dropout
        config = dataclasses.replace(config, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    else:
        config = dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(args.seed)
    model = hf_peer(config, hf_class="BertForMaskedLM")
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)
    dataset = [{"input_ids": b} for b in blocks]
    batch = args.batch if tuned else 8
    recipe = dict(learning_rate=args.lr, weight_decay=0.01, adam_beta2=0.98, adam_epsilon=1e-6,
                  lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1})  # fmt: skip
    optim = recipe if tuned else {}
    budget_s = args.minutes * 60

    def make(steps: int, output: Path) -> Trainer:
        targs = TrainingArguments(output_dir=str(output), per_device_train_batch_size=batch, max_steps=steps,
                                  save_strategy="no", logging_steps=max(1, steps // 50), report_to=[],
                                  seed=args.seed, dataloader_num_workers=0, use_cpu=True, disable_tqdm=True,
                                  save_only_model=True, warmup_steps=round(0.1 * steps) if tuned else 0,
                                  **optim)  # fmt: skip
        return Trainer(model=model, args=targs, train_dataset=dataset, data_collator=collator)

    if args.calibrate_only:
        return calibrate_peer(make, work / "calibrate" / arm)
    s_per_step = calibrated(work, arm)
    steps = max(10, int(budget_s * 0.97 / s_per_step))
    log(f"{arm}: {s_per_step:.3f} s/step -> {steps} steps for {args.minutes} min")

    class TimeMarks(TrainerCallback):
        """Save every ``eval_every`` seconds of training (saving excluded) and stop at the budget."""

        def __init__(self) -> None:
            self.begin = self.paused = self.pause_start = 0.0
            self.next_mark = args.eval_every_minutes * 60
            self.marks: list[dict[str, float]] = []

        def elapsed(self) -> float:
            return time.perf_counter() - self.begin - self.paused

        def on_train_begin(self, targs, state, control, **kw):
            self.begin = time.perf_counter()

        def on_step_end(self, targs, state, control, **kw):
            elapsed = self.elapsed()
            if elapsed >= self.next_mark or state.global_step >= state.max_steps or elapsed >= budget_s:
                self.next_mark += args.eval_every_minutes * 60
                self.pause_start = time.perf_counter()
                path = out / f"checkpoint-{state.global_step}"
                kw["model"].save_pretrained(path)
                self.marks.append({"step": state.global_step, "train_s": elapsed, "path": str(path)})
                self.paused += time.perf_counter() - self.pause_start
                if elapsed >= budget_s:
                    control.should_training_stop = True
            return control

    marks = TimeMarks()
    trainer = make(steps, out)
    trainer.add_callback(marks)
    trainer.train()
    record(work, f"train/{arm}", {"prep_s": prep_s, "s_per_step_calibrated": s_per_step, "steps": steps,
                                  "batch": batch, "checkpoints": marks.marks, "optim": optim or "Trainer defaults",
                                  "config": dataclasses.asdict(config), "blocks": len(blocks)})  # fmt: skip


def stage_calibrate(args: argparse.Namespace, work: Path) -> None:
    """Seconds per step of every arm, timed in turn (A, B, C, A, B, C, ...) in one process, so that load drifts hit
    all arms alike; each arm's steps are then set from the median so that its schedule ends at its budget. The
    ratios matter more than the absolute times: the lanes later run side by side under other load."""
    times: dict[str, list[float]] = {arm: [] for arm in args.arms.split(",")}
    calibration = vars(args) | {"calibrate_only": True}
    for repeat in range(args.calibration_repeats):
        for arm in times:
            times[arm].append((train_peer if arm.startswith("peer") else train_lmforge)(
                argparse.Namespace(**calibration), work, arm))  # fmt: skip
            log(f"calibration {repeat + 1}/{args.calibration_repeats}: {arm} {times[arm][-1]:.3f} s/step")
    record(work, "calibration", {arm: {"s_per_step": statistics.median(v), "repeats": v} for arm, v in times.items()})


def calibrated(work: Path, arm: str) -> float:
    calibration = load_results(work).get("calibration", {})
    if arm not in calibration:
        raise SystemExit(f"no calibration for {arm}: run --stages calibrate --arms ...,{arm} first")
    return calibration[arm]["s_per_step"]


def calibrate_peer(make: Any, path: Path, steps: int = 30) -> float:
    """Seconds per step of the Trainer after its first 10 steps (a throwaway run)."""
    from transformers import TrainerCallback

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            times.append(time.perf_counter())

    trainer = make(steps, path)
    trainer.add_callback(Clock())
    trainer.train()
    shutil.rmtree(path, ignore_errors=True)
    return (times[-1] - times[9]) / (len(times) - 10)


def lmforge_spec(arm: str, args: argparse.Namespace, vocab: int) -> tuple[str, dict[str, Any], float]:
    """(architecture, config overrides, learning rate) of an lmforge arm."""
    import dataclasses

    from lmforge.bench.speed import bench_config

    if arm == "lmforge-bert":
        cfg = dataclasses.replace(bert_config(args, vocab), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        return "bert", dataclasses.asdict(cfg), args.lr
    arch = LMFORGE_ARCHS.get(arm, arm)
    cfg = bench_config(arch, hidden_size=args.hidden, num_layers=args.layers, vocab_size=vocab,
                       max_length=max(512, args.seq_length))  # fmt: skip
    return arch, dataclasses.asdict(cfg), args.gau_lr if arch in ("gau-alpha", "flash-quad", "flash") else args.lr


def train_lmforge(args: argparse.Namespace, work: Path, arm: str) -> float | None:
    from lmforge.train.config import PretrainArgs
    from lmforge.train.pretrain import pretrain

    data, out = work / "data", work / "runs" / arm
    arch, overrides, lr = lmforge_spec(arm, args, vocab_size(data))

    def run(steps: int, output: Path, save_steps: int) -> dict[str, Any]:
        return pretrain(
            PretrainArgs(
                train_dir=str(data), output_dir=str(output), overwrite_output_dir=True, model=arch, model_preset=None,
                model_overrides=overrides, objective="mlm", wwm_mode="word", max_seq_length=args.seq_length,
                per_device_train_batch_size=args.batch, learning_rate=lr, **LMFORGE_RECIPE, max_steps=steps,
                logging_steps=save_steps, save_steps=save_steps, save_total_limit=None, do_eval=False,
                report_to="none", seed=args.seed, disable_tqdm=True, threads=1,
            )
        )  # fmt: skip

    if args.calibrate_only:
        probe = work / "calibrate" / arm
        first = run(10, probe, 10)["elapsed_s"]
        s_per_step = (run(40, probe, 40)["elapsed_s"] - first) / 30
        shutil.rmtree(probe, ignore_errors=True)
        return s_per_step
    s_per_step = calibrated(work, arm)
    steps = max(10, int(args.minutes * 60 * 0.97 / s_per_step))
    save_steps = max(1, round(steps * args.eval_every_minutes / args.minutes))
    log(
        f"{arm}: {arch}, lr {lr}, {s_per_step:.3f} s/step -> {steps} steps for {args.minutes} min, "
        f"save every {save_steps}"
    )
    results = run(steps, out, save_steps)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    elapsed = {r["step"]: r["elapsed_s"] for r in rows if "elapsed_s" in r and "step" in r}
    marks = []
    for path in sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(path.name.split("-")[1])
        if step in elapsed:
            marks.append({"step": step, "train_s": elapsed[step], "path": str(path)})
    record(work, f"train/{arm}", {"prep_s": 0.0, "s_per_step_calibrated": s_per_step, "steps": steps,
                                  "batch": args.batch, "lr": lr, "arch": arch, "config": overrides,
                                  "checkpoints": marks, "tokens": results.get("tokens")})  # fmt: skip


# ---------------------------------------------------------------- evaluation


def evaluate_checkpoint(path: str, data: Path, *, seed: int = 1234) -> dict[str, dict[str, float]]:
    """Held-out masked-LM metrics of any model the loader reads, on fixed masked positions, loaded once: "token"
    (every token its own "word": 15% of tokens masked independently, 80/10/10) and "word" (15% of whole words)."""
    from lmforge.data.collate import MLMCollator
    from lmforge.data.loader import ShardLoader
    from lmforge.data.shards import open_shards
    from lmforge.data.tokenizer import load_tokenizer
    from lmforge.eval.lm import evaluate_lm
    from lmforge.train.checkpoint import load_model

    tokenizer = load_tokenizer(data / "tokenizer")
    shards = open_shards(data / "shards" / "validation")
    words = MLMCollator(tokenizer, mlm_probability=0.15, mode="word", max_seq_length=shards.sequence_length)

    def tokens(examples: list, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return words([{"input_ids": e["input_ids"]} for e in examples], generator)  # no word_starts: all starts

    model = load_model(path)
    results = {}
    for name, collate in (("token", tokens), ("word", words)):
        loader = ShardLoader(shards, batch_size=32, collator=collate, seed=seed, shuffle=False, drop_last=False)
        results[name] = evaluate_lm(model, loader.iter_epoch(), objective="mlm", device=torch.device("cpu"))
    return results


def stage_evaluate(args: argparse.Namespace, work: Path) -> None:
    results = load_results(work)
    data = work / "data"
    for key, run in results.items():
        if not key.startswith("train/"):
            continue
        for mark in run["checkpoints"]:
            if "token_accuracy" in mark:
                continue
            metrics = evaluate_checkpoint(mark["path"], data)
            token, word = metrics["token"], metrics["word"]
            mark.update(token_accuracy=token["eval_accuracy"], token_loss=token["eval_loss"],
                        word_accuracy=word["eval_accuracy"], word_loss=word["eval_loss"])  # fmt: skip
            log(f"{key} step {mark['step']} ({mark['train_s'] / 60:.1f} min): token acc {token['eval_accuracy']:.4f}, "
                f"word acc {word['eval_accuracy']:.4f}")  # fmt: skip
        record(work, key, run)


# ---------------------------------------------------------------- report


def curve(run: dict[str, Any], prepare_s: float, metric: str) -> list[tuple[float, float]]:
    """(minutes end to end, accuracy) per checkpoint, starting at 0 accuracy when data preparation ends."""
    start = (run["prep_s"] or 0.0) + prepare_s
    return [(start / 60, 0.0)] + [((start + m["train_s"]) / 60, m[metric]) for m in run["checkpoints"]]


def minutes_to(points: list[tuple[float, float]], target: float) -> float | None:
    for (t0, a0), (t1, a1) in itertools.pairwise(points):
        if a1 >= target:
            return t0 + (t1 - t0) * (target - a0) / (a1 - a0) if a1 > a0 else t1
    return None


def stage_report(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    results = load_results(work)
    prepare_s = results["prepare"]["wall_s"]
    arms = {k.split("/", 1)[1]: v for k, v in results.items() if k.startswith("train/") and v["checkpoints"]}
    summary: dict[str, Any] = {"arms": {}}
    for metric in ("token_accuracy", "word_accuracy"):
        peer = arms.get("peer")
        target = peer["checkpoints"][-1][metric] if peer else None
        peer_minutes = curve(peer, 0.0, metric)[-1][0] if peer else None  # the peer pays only its own data work
        for name, run in arms.items():
            pts = curve(run, 0.0 if name.startswith("peer") else prepare_s, metric)
            row = summary["arms"].setdefault(name, {"final_minutes": pts[-1][0]})
            row[metric] = pts[-1][1]
            if target is not None:
                reach = minutes_to(pts, target)
                row[f"{metric}_minutes_to_peer_final"] = reach
                row[f"{metric}_speedup"] = peer_minutes / reach if reach else None
            row[f"{metric}_curve"] = pts
    summary["prepare_s"] = prepare_s
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_table(summary, results))
    plot(summary, work / "time_to_quality.png")
    return summary


def format_table(summary: dict[str, Any], results: dict[str, Any]) -> str:
    lines = [
        "| arm | steps | batch | end-to-end min | held-out acc, 15% tokens | min to peer's final | speed-up | "
        "acc, 15% whole words | min to peer's final | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def fmt(value: Any, pattern: str) -> str:
        return "not reached" if value is None else format(value, pattern)

    for name, row in summary["arms"].items():
        run = results[f"train/{name}"]
        cells = [name, str(run["checkpoints"][-1]["step"]), str(run["batch"]), f"{row['final_minutes']:.1f}"]
        for metric in ("token_accuracy", "word_accuracy"):
            speedup = row.get(f"{metric}_speedup")
            cells += [f"{row[metric]:.2%}", fmt(row.get(f"{metric}_minutes_to_peer_final"), ".1f"),
                      fmt(speedup, ".2f") + ("x" if speedup else "")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, metric, title in zip(axes, ("token_accuracy", "word_accuracy"),
                                 ("15% of tokens masked", "15% of whole words masked"), strict=True):  # fmt: skip
        for name, row in summary["arms"].items():
            xs, ys = zip(*row[f"{metric}_curve"], strict=True)
            ax.plot(xs, ys, marker="o", ms=3, label=name)
        ax.set_title(f"held-out MLM accuracy, {title}")
        ax.set_xlabel("minutes, end to end (data preparation + training, 1 thread)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- bookkeeping


def load_results(work: Path) -> dict[str, Any]:
    file = work / "results.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def record(work: Path, key: str, value: dict[str, Any]) -> None:
    """Merge one entry into WORK/results.json (two lanes write it: read-modify-rename under a lock file)."""
    import fcntl

    work.mkdir(parents=True, exist_ok=True)
    with open(work / "results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = load_results(work)
        results[key] = value | {"recorded": datetime.now(UTC).isoformat(timespec="seconds")}
        tmp = work / "results.json.tmp"
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, work / "results.json")


def environment() -> dict[str, Any]:
    import transformers

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    return {"date": datetime.now(UTC).isoformat(timespec="minutes"), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "cpu": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(), "commit": commit.strip()}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default="prepare,calibrate,train,evaluate,report")
    parser.add_argument("--arms", default="peer,lmforge-bert,lmforge-gau")
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget of each arm in this call")
    parser.add_argument("--eval_every_minutes", type=float, default=3.0)
    parser.add_argument("--work", default="runs/time_to_quality")
    parser.add_argument("--seq_length", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4, help="BERT blocks (GAU stacks get twice as many layers)")
    parser.add_argument("--batch", type=int, default=32, help="lmforge arms and peer-tuned")
    parser.add_argument("--lr", type=float, default=1e-3, help="lmforge-bert and peer-tuned")
    parser.add_argument("--gau_lr", type=float, default=3e-3, help="GAU-alpha / FLASH arms")
    parser.add_argument("--validation_percent", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calibration_repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also copy results + summary + environment here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(args.work)
    stages = args.stages.split(",")
    if "prepare" in stages:
        stage_prepare(args, work)
    args.calibrate_only = False
    if "calibrate" in stages:
        stage_calibrate(args, work)
    if "train" in stages:
        for arm in args.arms.split(","):
            log(f"== {arm}: {args.minutes} min")
            (train_peer if arm.startswith("peer") else train_lmforge)(args, work, arm)
    if "evaluate" in stages:
        stage_evaluate(args, work)
    if "report" in stages:
        summary = stage_report(args, work)
        if args.json:
            payload = {"environment": environment(), "argv": sys.argv, "summary": summary,
                       "results": load_results(work)}  # fmt: skip
            Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
            shutil.copy(work / "time_to_quality.png", Path(args.json).with_suffix(".png"))


if __name__ == "__main__":
    main()
