"""Does lmforge's pretraining pay? A GAU-alpha masked LM pretrained on the bundled corpus vs the same architecture
from random init, fine-tuned on the bundled labelled splits, several seeds each, in one command (issue 16).

Stages (all by default): ``prepare`` (``lmforge prepare all`` on ``data/corpus`` into WORK/data), ``pretrain``
(whole-word MLM, the demo's optimizer recipe, into WORK/pretrain), ``finetune`` (grid: task x pooling x arm x seed,
the two arms interleaved per seed so that load drifts on the shared machine hit both alike). A few-label task is
the first N examples of a task's train split after a fixed shuffle (``--few_label_seed``), with the full dev split
(``--few_tasks``: ``lo_topic`` by default).

No model selection on dev: every fine-tuning run evaluates dev once, after its last step, and reports the final
weights (``eval_steps`` past the end, so the loop's best-checkpoint logic sees one evaluation only). Dev is therefore
a split not used for selection; no hyper-parameter was tuned on it beyond what ``quality.md`` says.

Usage: ``python benchmarks/quality.py --json benchmarks/quality.json`` (writes WORK=runs/quality; ``--stages
finetune`` reuses an existing WORK/pretrain).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
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


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        return commit + ("+dirty(src)" if dirty else "")
    except OSError:
        return "unknown"


def shard_layout(data: Path) -> dict[str, Any]:
    files = {str(p.relative_to(data)): p.stat().st_size for p in sorted(data.rglob("*")) if p.is_file()}
    layout: dict[str, Any] = {"files": files}
    for meta in sorted(data.rglob("*.json")):
        if meta.stat().st_size < 20_000 and "tokenizer" not in str(meta.relative_to(data)):
            with contextlib.suppress(ValueError):
                layout[str(meta.relative_to(data))] = json.loads(meta.read_text())
    return layout


def stage_prepare(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from lmforge.data.prepare import PrepareAllArgs, prepare_all

    started = time.perf_counter()
    files = sorted((ROOT / "data" / "corpus").glob("*.jsonl"))
    if args.corpus:
        files = [f for f in files if f.stem in args.corpus.split(",")]
    shutil.rmtree(work / "data", ignore_errors=True)
    prepare_all(
        PrepareAllArgs(input=[str(f) for f in files], output_dir=str(work / "data"), cjk_continuations=False,
                       max_seq_length=args.seq_length, validation_split_percentage=2.0, seed=42, progress=False)
    )  # fmt: skip
    return {"corpus": {f.name: f.stat().st_size for f in files}, "wall_s": time.perf_counter() - started,
            "layout": shard_layout(work / "data")}  # fmt: skip


def pretrain_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return dict(hidden_size=args.hidden, num_hidden_layers=args.layers, intermediate_size=2 * args.hidden,
                attention_key_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip


def stage_pretrain(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from lmforge.demo import OPTIMIZER_RECIPE
    from lmforge.train.config import PretrainArgs
    from lmforge.train.pretrain import pretrain

    started = time.perf_counter()
    results = pretrain(
        PretrainArgs(
            train_dir=str(work / "data"), output_dir=str(work / "pretrain"), overwrite_output_dir=True,
            model="gau-alpha", model_preset="small", model_overrides=pretrain_overrides(args), objective="mlm",
            wwm_mode="word", max_seq_length=args.seq_length, per_device_train_batch_size=args.batch,
            per_device_eval_batch_size=64, learning_rate=args.lr, **OPTIMIZER_RECIPE, max_steps=args.steps,
            logging_steps=max(1, args.steps // 40), eval_steps=max(1, args.steps // 4), save_steps=args.steps,
            save_total_limit=1, max_eval_samples=512, seed=args.pretrain_seed, disable_tqdm=True, report_to="none",
            threads=args.threads,
        )
    )  # fmt: skip
    return {"wall_s": time.perf_counter() - started, "results": results}


def pretrain_summary(work: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in (work / "pretrain" / "metrics.jsonl").read_text().splitlines() if line]
    train = [r for r in rows if "train_loss" in r]
    evals = [r for r in rows if "eval_accuracy" in r]
    last = train[-1]
    return {
        "steps": last["step"],
        "tokens_seen": last.get("tokens"),
        "train_elapsed_s": last.get("elapsed_s"),
        "s_per_step": last["elapsed_s"] / last["step"] if last.get("elapsed_s") else None,
        "first_train_loss": train[0]["train_loss"],
        "last_train_loss": last["train_loss"],
        "eval": [{k: r[k] for k in ("step", "eval_loss", "eval_accuracy") if k in r} for r in evals],
    }


def few_label_split(work: Path, task: str, count: int, seed: int) -> Path:
    source, target = ROOT / "data" / "clue" / task, work / "tasks" / f"{task}_{count}"
    target.mkdir(parents=True, exist_ok=True)
    lines = [line for line in (source / "train.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(lines)
    (target / "train.jsonl").write_text("\n".join(lines[:count]) + "\n", encoding="utf-8")
    for name in ("dev.jsonl", "labels.json"):
        shutil.copy(source / name, target / name)
    return target


def stage_finetune(args: argparse.Namespace, work: Path, out: dict[str, Any], save: Any) -> None:
    from lmforge.tasks.finetune import FinetuneArgs, finetune
    from lmforge.train.checkpoint import TOKENIZER_DIR, load_model_info, resolve_checkpoint

    checkpoint = resolve_checkpoint(args.pretrain_dir or str(work / "pretrain"))
    info = load_model_info(checkpoint)
    arms = {
        "pretrained": dict(model=str(checkpoint)),
        "random": dict(model=info["model"], model_overrides=info["config"],
                       tokenizer_dir=str(checkpoint / TOKENIZER_DIR)),
    }  # fmt: skip
    arms = {name: arms[name] for name in args.arms.split(",")}
    wanted = args.tasks.split(",")
    tasks = {
        name: (ROOT / "data" / "clue" / name, args.epochs) for name in ("lo_topic", "poem_genre") if name in wanted
    }
    if "few" in wanted:  # the few-label variants: the first N train lines of each --few_tasks task after a shuffle
        for name in args.few_tasks.split(","):
            split = few_label_split(work, name, args.few_label, args.few_label_seed)
            tasks[f"{name}_{args.few_label}"] = (split, args.few_label_epochs)
    runs = out.setdefault("runs", [])
    done = {(r["task"], r["pooling"], r["arm"], r["seed"], r["lr"], r.get("llrd", 1.0), r.get("pretrain", "pretrain"))
            for r in runs}  # fmt: skip
    tag = args.tag or (Path(args.pretrain_dir).name if args.pretrain_dir else "pretrain")
    llrds = [float(x) for x in args.llrds.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    # every task at the first lr, then the lr sweep (lo_topic only) last: a run cut short still has the main grid
    jobs = [(task, lrs[0]) for task in tasks] + [("lo_topic", lr) for lr in lrs[1:] if "lo_topic" in tasks]
    grid = [(task, lr, pooling, llrd, seed) for task, lr in jobs for pooling in args.poolings.split(",")
            for llrd in llrds for seed in (int(s) for s in args.seeds.split(","))]  # fmt: skip
    for task, lr, pooling, llrd, seed in grid:
        data, epochs = tasks[task]
        for arm, model_args in arms.items():  # interleaved per seed
            if (task, pooling, arm, seed, lr, llrd, tag) in done:
                continue
            run_dir = work / "finetune" / f"{tag}-{task}-{pooling}-{arm}-lr{lr:g}-d{llrd:g}-s{seed}"
            started = time.perf_counter()
            report = finetune(
                FinetuneArgs(
                    "classification", data_dir=str(data), output_dir=str(run_dir), overwrite_output_dir=True,
                    max_seq_length=args.ft_length, per_device_train_batch_size=32, learning_rate=lr,
                    num_train_epochs=epochs, warmup_ratio=0.1, pooling=pooling, classifier_dropout=0.1,
                    eval_steps=10**9, save_steps=10**9, logging_steps=50, report_to="none", seed=seed,
                    disable_tqdm=True, threads=args.finetune_threads, layerwise_lr_decay=llrd, **model_args,
                )
            )  # fmt: skip
            dev = report["dev"]
            runs.append({"task": task, "pooling": pooling, "arm": arm, "seed": seed, "lr": lr, "epochs": epochs,
                         "llrd": llrd, "pretrain": tag,
                         "steps": report.get("steps"), "best_step": report.get("best_step"),
                         "accuracy": dev["accuracy"], "macro_f1": dev.get("macro_f1"),
                         "majority": dev["majority_baseline_accuracy"],
                         "train_examples": report["counts"]["train"]["examples"],
                         "dev_examples": report["counts"]["dev"]["examples"],
                         "wall_s": time.perf_counter() - started})  # fmt: skip
            print(f"{tag} {task} {pooling} lr={lr:g} llrd={llrd:g} {arm} seed={seed}: "
                  f"dev accuracy {dev['accuracy']:.3f} ({runs[-1]['wall_s']:.0f} s)", flush=True)  # fmt: skip
            shutil.rmtree(run_dir, ignore_errors=True)  # weights are not kept
            save()


def table(runs: list[dict[str, Any]]) -> str:
    def key(r: dict[str, Any]) -> tuple:
        return r.get("pretrain", "pretrain"), r["task"], r["pooling"], r["lr"], r.get("llrd", 1.0)

    keys = sorted({key(r) for r in runs}, key=lambda k: (k[0], k[1], k[3], k[2], k[4]))
    lines = ["| pretraining | task | pooling | lr | layer decay | pretrained mean (min-max) | random mean (min-max) | "
             "gain | beyond spread? | majority |", "|---|---|---|---:|---:|---:|---:|---:|---|---:|"]  # fmt: skip
    for tag, task, pooling, lr, llrd in keys:
        cell, acc = {}, {}
        for arm in ("pretrained", "random"):
            a = [r["accuracy"] for r in runs if key(r) == (tag, task, pooling, lr, llrd) and r["arm"] == arm]
            acc[arm] = a
            cell[arm] = f"{statistics.mean(a):.3f} ({min(a):.3f}-{max(a):.3f}) n={len(a)}" if a else "-"
        if acc["pretrained"] and acc["random"]:
            gain = statistics.mean(acc["pretrained"]) - statistics.mean(acc["random"])
            beyond = min(acc["pretrained"]) > max(acc["random"]) or max(acc["pretrained"]) < min(acc["random"])
            verdict = "no" if not beyond else "yes, pretrained worse" if gain < 0 else "yes"
            verdict += ", >= 5 pts" if gain >= 0.05 and beyond else ""
            gain_s = f"{100 * gain:+.1f} pts"
        else:
            gain_s, verdict = "-", "-"
        majority = next(r["majority"] for r in runs if r["task"] == task)
        lines.append(f"| {tag} | {task} | {pooling} | {lr:g} | {llrd:g} | {cell['pretrained']} | {cell['random']} "
                     f"| {gain_s} | {verdict} "
                     f"| {majority:.3f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="runs/quality")
    parser.add_argument("--stages", default="prepare,pretrain,finetune")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of prepare and pretraining")
    parser.add_argument(
        "--finetune_threads",
        type=int,
        default=1,
        help="torch threads of fine-tuning (1: on a shared 2-core machine 2 threads spin-wait)",
    )
    parser.add_argument(
        "--corpus", default="", help="pretrain on these data/corpus files (stems, comma-separated); all by default"
    )
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seq_length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--pretrain_seed", type=int, default=42, help="seed of the pretraining run (init, masking, order)"
    )
    parser.add_argument("--tasks", default="lo_topic,poem_genre,few")
    parser.add_argument("--poolings", default="cls,mean")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--lrs", default="1e-3", help="fine-tuning lrs; extra ones run on lo_topic only")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--ft_length", type=int, default=64)
    parser.add_argument("--few_label", type=int, default=200)
    parser.add_argument("--few_label_seed", type=int, default=0)
    parser.add_argument("--few_tasks", default="lo_topic", help="tasks whose few-label variant 'few' runs")
    parser.add_argument("--few_label_epochs", type=float, default=15.0)
    parser.add_argument("--llrds", default="1.0", help="layer-wise lr decays of fine-tuning (1 = off), every task")
    parser.add_argument(
        "--pretrain_dir",
        default=None,
        help="fine-tune this pretraining run (default WORK/pretrain); runs are tagged with its name",
    )
    parser.add_argument("--tag", default="", help="name of the pretraining run in the records (default: its directory)")
    parser.add_argument(
        "--arms",
        default="pretrained,random",
        choices=["pretrained,random", "pretrained", "random"],
        help="which arms to fine-tune (a second pretraining run of one architecture needs no new random arm)",
    )
    parser.add_argument("--json", default="benchmarks/quality.json")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json)
    out: dict[str, Any] = json.loads(json_path.read_text()) if json_path.is_file() else {}
    out |= {"date": datetime.now(UTC).isoformat(timespec="seconds"), "torch": torch.__version__,
            "machine": f"{platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} threads={args.threads}"
                       " (shared with other engineers' jobs)", "python": sys.version.split()[0],
            "git_commit": git_commit(), "argv": sys.argv}  # fmt: skip
    out.setdefault("invocations", []).append({"date": out["date"], "git_commit": out["git_commit"], "argv": sys.argv,
                                             "args": vars(args)})  # fmt: skip

    def save() -> None:
        json_path.write_text(json.dumps(out, indent=2, ensure_ascii=False, default=str) + "\n")

    stages = args.stages.split(",")
    if "prepare" in stages:
        out["prepare"] = stage_prepare(args, work)
        save()
        print(f"prepare: {out['prepare']['wall_s']:.0f} s", flush=True)
    if "pretrain" in stages:
        out["pretrain"] = {"recipe": {"model": "gau-alpha", "preset": "small", "overrides": pretrain_overrides(args),
                                      "steps": args.steps, "batch": args.batch, "seq_length": args.seq_length,
                                      "lr": args.lr, "threads": args.threads, "seed": args.pretrain_seed,
                                      "corpus": args.corpus or "all"}}  # fmt: skip
        out["pretrain"] |= stage_pretrain(args, work)
        out["pretrain"] |= pretrain_summary(work)
        save()
        print(f"pretrain: {out['pretrain']['wall_s']:.0f} s, {out['pretrain']['s_per_step']:.2f} s/step", flush=True)
    if "finetune" in stages:
        ft_started = time.perf_counter()
        stage_finetune(args, work, out, save)
        out["finetune_wall_s"] = out.get("finetune_wall_s", 0.0) + time.perf_counter() - ft_started
        save()
    if out.get("runs"):
        print(table(out["runs"]))


if __name__ == "__main__":
    main()
