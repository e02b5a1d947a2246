"""Crash-resume chaos: SIGKILL a tiny pretraining run at random moments, resume it each time, demand bitwise equality.

What: prepares a small MLM dataset from the bundled corpus (``lmforge prepare all``, char tokenizer, rjieba
whole-word boundaries), trains a tiny BERT for ``--steps`` steps straight, and trains it again in a second run
directory that is killed with SIGKILL at ``--kills`` random moments and resumed each time with
``--resume_from_checkpoint auto``. The final weights, the optimizer moments, every logged training loss and every
evaluation metric of the killed run must be bitwise equal to the straight run's (CPU, one thread), or the script
exits 1. It prints a report: kills (where each one landed), resumes, and steps recomputed.

Where the kills land (drawn with ``random.Random(--seed)``: with ``--kills`` >= 8 every kind below at least once,
with fewer a checkpoint write and data loading first; the step each is armed at is random too):

* ``data``: inside the training loader's ``__next__``, after it has advanced its position and drawn the masking
  randomness of a micro-batch, before the batch reaches the model;
* ``timer``: a thread SIGKILLs the process a random 0-150 ms after a step starts, wherever it is (forward,
  backward, optimizer, logging, saving);
* ``eval``: inside the held-out evaluation, after the metrics were computed and before they are logged;
* ``save-weights`` / ``save-state`` / ``save-manifest``: the weights, ``training_state.pt`` or manifest of a
  checkpoint half written (a random fraction of its bytes on disk), then SIGKILL;
* ``save-rename``: the complete temporary checkpoint directory written, killed just before its atomic rename;
* ``rotate``: the new checkpoint in place, killed before the old ones are rotated away.

The in-process kill points are installed by a small bootstrap (``CHILD``) that monkeypatches the library in the
child process only; nothing in ``lmforge`` knows about chaos. A fresh process per (re)start, as in production.

Usage (``make chaos`` runs the default)::

    .venv/bin/python scripts/chaos.py [--kills 10] [--steps 40] [--seed 0] [--workdir DIR] [--json report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCUM = 2  # micro-batches per step: the loader position and the step counter differ
SAVE_STEPS = 4
EVAL_STEPS = 8
KINDS = ("data", "timer", "eval", "save-weights", "save-state", "save-manifest", "save-rename", "rotate")
# within one step, the order in which the moments happen
PHASE = {kind: i for i, kind in enumerate(KINDS)}

# Bootstrap of every child: one thread, the kill point of $CHAOS_KILL installed, then the real CLI.
CHILD = r"""
import io, json, os, random, signal, sys, threading
import torch
torch.set_num_threads(1)
spec = json.loads(os.environ.get("CHAOS_KILL") or "null")

def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

if spec is not None:
    import lmforge.train.checkpoint as checkpoint
    import lmforge.train.loop as loop
    from lmforge.data.loader import ShardLoader
    kind, step, fraction = spec["kind"], spec["step"], spec["fraction"]
    tmp_tag = f".tmp-checkpoint-{step}-"

    def torn(data):  # a random prefix of the bytes that should have been written
        return data[: int(len(data) * fraction)]

    if kind in ("data", "timer"):
        original_next = ShardLoader.__next__
        target = (step - 1) * spec["accum"] + (spec["micro"] if kind == "data" else 0)
        def chaos_next(self):
            position = self.epoch * self.steps_per_epoch + self.step
            batch = original_next(self)
            if position == target:
                if kind == "data":
                    die()
                threading.Timer(spec["delay"], die).start()
            return batch
        ShardLoader.__next__ = chaos_next
    elif kind == "eval":
        original_eval = loop.evaluate_lm
        def chaos_eval(*args, **kwargs):
            result = original_eval(*args, **kwargs)
            if loop_state["step"] == step:
                die()
            return result
        loop_state = {"step": None}
        original_run = loop.run_evaluation
        def chaos_run(job):
            loop_state["step"] = job.state.step
            return original_run(job)
        loop.evaluate_lm, loop.run_evaluation = chaos_eval, chaos_run
    elif kind == "save-weights":
        original_save_file = checkpoint.save_file
        def chaos_save_file(tensors, filename, metadata=None):
            original_save_file(tensors, filename, metadata=metadata)
            if tmp_tag in filename:
                os.truncate(filename, int(os.path.getsize(filename) * fraction))
                die()
        checkpoint.save_file = chaos_save_file
    elif kind == "save-state":
        original_torch_save = torch.save
        def chaos_torch_save(obj, f, *args, **kwargs):
            if tmp_tag in str(getattr(f, "name", "")):
                buffer = io.BytesIO()
                original_torch_save(obj, buffer, *args, **kwargs)
                f.write(torn(buffer.getvalue())); f.flush(); os.fsync(f.fileno())
                die()
            return original_torch_save(obj, f, *args, **kwargs)
        torch.save = chaos_torch_save
    elif kind == "save-manifest":
        original_write = checkpoint._fsync_write
        def chaos_write(path, data):
            if tmp_tag in str(path) and path.name == checkpoint.MANIFEST_FILE:
                original_write(path, torn(data))
                die()
            return original_write(path, data)
        checkpoint._fsync_write = chaos_write
    elif kind == "save-rename":
        original_replace = os.replace
        def chaos_replace(src, dst, *args, **kwargs):
            if tmp_tag in str(src):
                die()
            return original_replace(src, dst, *args, **kwargs)
        checkpoint.os.replace = chaos_replace  # the os module itself: only checkpoint.py renames checkpoints
    elif kind == "rotate":
        original_rotate = loop.rotate_checkpoints
        def chaos_rotate(run_dir, keep):
            if (run_dir / f"checkpoint-{step}").is_dir():
                die()
            return original_rotate(run_dir, keep)
        loop.rotate_checkpoints = chaos_rotate

from lmforge.cli import main
main(sys.argv[1:])
"""


@dataclass
class Kill:
    kind: str
    step: int  # the step (1-based) during which the kill is armed
    micro: int = 0  # data: which micro-batch of the step
    fraction: float = 0.5  # save-*: share of the file's bytes on disk
    delay: float = 0.0  # timer: seconds after the step's first micro-batch
    # filled in by the run
    killed: bool = False
    last_logged_step: int = 0  # last step in metrics.jsonl when the process died
    resumed_from: int | None = None  # step of the checkpoint the next start resumed from (0: fresh start)
    left_behind: str = ""  # what the kill left in the run directory


def plan_kills(count: int, steps: int, seed: int) -> list[Kill]:
    """``count`` kill moments in increasing order: every kind once (as far as ``count`` allows, a checkpoint write
    and data loading first), then kinds drawn at random."""
    rng = random.Random(seed)
    others = [k for k in KINDS if k not in ("save-weights", "data")]
    rng.shuffle(others)
    kinds = (["save-weights", "data", *others] + [rng.choice(KINDS) for _ in range(count)])[:count]
    kills = []
    for kind in kinds:
        if kind.startswith("save") or kind == "rotate":
            step = rng.choice(range(SAVE_STEPS, steps, SAVE_STEPS))  # not the last step: the run must go on
        elif kind == "eval":
            step = rng.choice(range(EVAL_STEPS, steps, EVAL_STEPS))
        else:
            step = rng.randint(1, steps - 2)
        kills.append(
            Kill(
                kind=kind,
                step=step,
                micro=rng.randrange(ACCUM),
                fraction=round(rng.uniform(0.05, 0.95), 3),
                delay=round(rng.uniform(0.0, 0.15), 3),
            )
        )
    return sorted(kills, key=lambda k: (k.step, PHASE[k.kind]))


def prepare_data(workdir: Path) -> Path:
    """A small MLM dataset from the first documents of the bundled corpus (seconds)."""
    out = workdir / "data"
    if (out / "shards" / "train" / "index.json").is_file():
        return out
    raw = workdir / "raw.jsonl"
    with open(ROOT / "data" / "corpus" / "poetry.jsonl", encoding="utf-8") as f:
        raw.write_text("".join(line for _, line in zip(range(400), f, strict=False)), encoding="utf-8")
    command = [sys.executable, "-m", "lmforge", "prepare", "all", "--input", str(raw), "--output_dir", str(out)]
    command += ["--max_seq_length", "32", "--vocab_size", "2000", "--progress", "false", "--seed", "0"]
    subprocess.run(command, env=_env(None), check=True, capture_output=True, text=True)
    return out


def _env(kill: Kill | None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    env.pop("CHAOS_KILL", None)
    if kill is not None:
        env["CHAOS_KILL"] = json.dumps(asdict(kill) | {"accum": ACCUM})
    return env


def _command(data: Path, out: Path, steps: int, *, resume: bool) -> list[str]:
    command = [sys.executable, "-c", CHILD, "pretrain", "--config", str(ROOT / "configs/tiny/bert-mlm.yaml")]
    command += ["--train_dir", str(data), "--output_dir", str(out), "--max_steps", str(steps)]
    command += ["--gradient_accumulation_steps", str(ACCUM), "--logging_steps", "1", "--save_steps", str(SAVE_STEPS)]
    command += ["--eval_steps", str(EVAL_STEPS), "--save_total_limit", "2", "--report_to", "none"]
    return command + (["--resume_from_checkpoint", "auto"] if resume else [])


def _last_logged_step(run: Path) -> int:
    from lmforge.train.metrics import read_metrics

    path = run / "metrics.jsonl"
    return max((r["step"] for r in read_metrics(path) if "train_loss" in r), default=0) if path.is_file() else 0


def _left_behind(run: Path) -> str:
    from lmforge.train.checkpoint import list_checkpoints, verify_checkpoint

    notes = [f"torn temporary {p.name}" for p in sorted(run.glob(".tmp-checkpoint-*"))]
    for step, path in list_checkpoints(run):
        reason = verify_checkpoint(path)
        notes.append(f"checkpoint-{step} " + ("valid" if reason is None else "INVALID"))
    return ", ".join(notes) or "no checkpoint yet"


def _valid_step(run: Path) -> int:
    from lmforge.train.checkpoint import find_latest_checkpoint

    latest = find_latest_checkpoint(run, quiet=True)
    return int(latest.name.split("-")[1]) if latest is not None else 0


def _rearm(kill: Kill, *, resume_step: int, steps: int) -> None:
    """A timer kill may land a few steps late, past a checkpoint: the next kill must still be ahead of the resume."""
    every = SAVE_STEPS if kill.kind.startswith("save") or kill.kind == "rotate" else EVAL_STEPS
    if kill.kind in ("data", "timer"):
        every = 1
    if kill.step <= resume_step:
        kill.step = min(s for s in range(resume_step + 1, resume_step + every + 1) if s % every == 0)
    if kill.step >= steps:
        raise SystemExit(f"cannot re-arm {kill} after a resume from step {resume_step}; use more --steps")


def _resumed_from(output: str) -> int:
    for line in output.splitlines():
        if line.startswith("resuming from") and " at step " in line:
            return int(line.rsplit(" at step ", 1)[1])
    return 0


def run_chaos(data: Path, workdir: Path, *, steps: int, kills: list[Kill]) -> dict:
    straight, chaotic = workdir / "straight", workdir / "chaos"
    started = time.perf_counter()
    reference = subprocess.Popen(
        _command(data, straight, steps, resume=False), env=_env(None), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    starts, outputs = 0, []
    for i, kill in enumerate(kills):
        run = subprocess.run(
            _command(data, chaotic, steps, resume=i > 0), env=_env(kill), capture_output=True, text=True, timeout=600
        )
        starts += 1
        outputs.append(run.stdout + run.stderr)
        if i > 0:
            kills[i - 1].resumed_from = _resumed_from(run.stdout)
        if run.returncode != -signal.SIGKILL:
            raise SystemExit(f"start {starts} was not killed ({kill}); rc={run.returncode}\n{outputs[-1][-3000:]}")
        kill.killed = True
        kill.last_logged_step = _last_logged_step(chaotic)
        kill.left_behind = _left_behind(chaotic)
        if i + 1 < len(kills):
            _rearm(kills[i + 1], resume_step=_valid_step(chaotic), steps=steps)
    final = subprocess.run(_command(data, chaotic, steps, resume=True), env=_env(None), capture_output=True, text=True)
    starts += 1
    if final.returncode != 0:
        raise SystemExit(f"the final resume failed (rc={final.returncode}):\n{(final.stdout + final.stderr)[-3000:]}")
    kills[-1].resumed_from = _resumed_from(final.stdout)
    reference_output = reference.communicate(timeout=600)[0].decode()
    if reference.returncode != 0:
        raise SystemExit(f"the straight run failed:\n{reference_output[-3000:]}")
    return {
        "straight": straight,
        "chaos": chaotic,
        "starts": starts,
        "seconds": time.perf_counter() - started,
    }


def compare(straight: Path, chaotic: Path, steps: int) -> dict:
    """Bitwise comparison of the two runs: losses, eval metrics, final weights and optimizer state."""
    import torch
    from safetensors.torch import load_file

    from lmforge.train.checkpoint import MODEL_FILE, load_training_state
    from lmforge.train.metrics import read_metrics

    def records(run: Path) -> dict[tuple[str, int], float]:
        keys = ("train_loss", "grad_norm", "learning_rate", "eval_loss", "eval_accuracy")
        return {(k, r["step"]): r[k] for r in read_metrics(run) for k in keys if k in r}

    a, b = records(straight), records(chaotic)
    losses = sorted(step for key, step in a if key == "train_loss")
    weights = [load_file(str(run / f"checkpoint-{steps}" / MODEL_FILE)) for run in (straight, chaotic)]
    states = [load_training_state(run / f"checkpoint-{steps}") for run in (straight, chaotic)]
    moments = [s["optimizer"]["state"] for s in states]
    return {
        "train_losses_logged": len(losses),
        "train_losses_complete": losses == list(range(1, steps + 1)),
        "metrics_equal": a == b,
        "weights_equal": weights[0].keys() == weights[1].keys()
        and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]),
        "optimizer_equal": all(
            torch.equal(moments[0][n][m], moments[1][n][m]) for n in moments[0] for m in ("exp_avg", "exp_avg_sq")
        ),
        "loader_equal": states[0]["ranks"][0]["loader"]["step"] == states[1]["ranks"][0]["loader"]["step"]
        and states[0]["ranks"][0]["loader"]["epoch"] == states[1]["ranks"][0]["loader"]["epoch"],
    }


def report(kills: list[Kill], result: dict, checks: dict) -> str:
    recomputed = [k.last_logged_step - (k.resumed_from or 0) for k in kills]
    lines = [
        f"chaos: {len(kills)} SIGKILLs, {len(kills)} resumes ({result['starts']} process starts), "
        f"{sum(recomputed)} steps recomputed in total, {result['seconds']:.0f} s",
        "",
        "| # | kill during | armed at step | last logged step | resumed from | recomputed | left behind |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for i, (kill, redo) in enumerate(zip(kills, recomputed, strict=True), 1):
        where = {"data": f"data loading (micro-batch {kill.micro})", "timer": f"anywhere (+{kill.delay * 1000:.0f} ms)"}
        where |= {k: f"{k} ({kill.fraction:.0%} written)" for k in ("save-weights", "save-state", "save-manifest")}
        lines.append(
            f"| {i} | {where.get(kill.kind, kill.kind)} | {kill.step} | {kill.last_logged_step} | "
            f"{kill.resumed_from} | {redo} | {kill.left_behind} |"
        )
    lines.append("")
    lines.append("bitwise vs the straight run: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory, deleted")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = parser.parse_args(argv)
    if args.kills < 2 or args.steps < 2 * SAVE_STEPS + 2:
        parser.error(f"need --kills >= 2 and --steps >= {2 * SAVE_STEPS + 2}")

    with tempfile.TemporaryDirectory(prefix="lmforge-chaos-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in ("straight", "chaos"):
            if (workdir / name).exists():
                raise SystemExit(f"{workdir / name} exists; pass an empty --workdir")
        data = prepare_data(workdir)
        kills = plan_kills(args.kills, args.steps, args.seed)
        result = run_chaos(data, workdir, steps=args.steps, kills=kills)
        checks = compare(result["straight"], result["chaos"], args.steps)
    text = report(kills, result, checks)
    print(text, flush=True)
    ok = all(value for key, value in checks.items() if key != "train_losses_logged")
    if args.json is not None:
        summary = {"kills": [asdict(k) for k in kills], "checks": checks, "ok": ok}
        summary |= {"starts": result["starts"], "seconds": result["seconds"], "seed": args.seed, "steps": args.steps}
        summary["steps_recomputed"] = sum(k.last_logged_step - (k.resumed_from or 0) for k in kills)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print("chaos: PASS (bitwise equal)" if ok else "chaos: FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
