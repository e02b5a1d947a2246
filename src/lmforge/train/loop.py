"""The training loop: one function, read top to bottom (R11; nanoGPT ``train.py``, lingua ``train.py``).

``train(job)`` owns stepping, gradient accumulation, mixed precision, clipping, non-finite handling, logging,
evaluation and checkpointing. The model owns its loss (``model(**batch).loss``); ``pretrain.py`` builds the
``TrainingJob`` (model, optimizer, loaders, schedule, state) and restores it from a checkpoint when resuming.
Fine-tuning (``tasks/finetune.py``) runs through the same loop: its job brings an ``evaluate`` callable (dev
metrics) and a ``metric_for_best_model``; a checkpoint is also saved whenever that metric improves, and the best
checkpoint survives ``save_total_limit`` rotation (HF ``load_best_model_at_end``).

Exact resume: a checkpoint after step k holds the weights, optimizer, GradScaler, ``TrainState`` (including
the logging window), every rank's loader position and RNG states. Nothing else in here draws from a global RNG
during evaluation or saving (evaluation masks with its own generator, sampling too), so N straight steps and
"k steps, SIGKILL, resume, N - k steps" give bitwise-equal losses and weights on CPU (``tests/train``).

Conventions as HF ``Trainer``: the loss of a step is the mean of its micro-batch losses (each already a mean
over that micro-batch's predicted tokens); the update with 0-based index ``step`` uses ``lr * schedule(step)``;
a skipped (non-finite) step still advances the step counter and the schedule.

``TrainingJob``, ``TrainState`` and the loop's exceptions live in ``train/state.py`` and are re-exported here.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lmforge.eval.degeneration import continuation_quality
from lmforge.eval.lm import count_output_predictions, evaluate_lm
from lmforge.eval.probe import score_probe
from lmforge.train.checkpoint import find_latest_checkpoint, rotate_checkpoints, save_checkpoint, verify_checkpoint
from lmforge.train.distributed import (
    all_reduce_sum,
    barrier,
    gather_objects,
    model_state_for_save,
    optimizer_state_for_save,
    set_gradient_sync,
    unwrap,
)
from lmforge.train.metrics import plot_loss
from lmforge.train.optim import set_learning_rate
from lmforge.train.rng import capture_rng_state
from lmforge.train.state import (  # re-exported: the job and state types live in train/state.py
    LM_OBJECTIVES,
    MODEL_INPUTS,
    NonFiniteLossError,
    TrainingInterrupted,
    TrainingJob,
    TrainState,
    empty_window,
)

__all__ = [
    "MODEL_INPUTS",
    "NonFiniteLossError",
    "TrainState",
    "TrainingInterrupted",
    "TrainingJob",
    "save_training_checkpoint",
    "train",
]

# A checkpoint is healthy when its weights are finite and, since the previous save, no step was skipped for a
# non-finite loss or gradient (fp16 overflows at the current loss scale excepted: the scaler handles them) and no
# step's loss spiked: above LOSS_SPIKE_FACTOR times the running mean of the earlier losses *and* LOSS_SPIKE_NATS
# above it (the margin keeps a fine-tuning loss of 0.01 -> 0.05 from counting). The newest healthy checkpoint is
# never rotated away and is the one the stop message after repeated non-finite steps recommends: the newest
# checkpoint can hold weights that already diverged (issue 18: max |w| 2.8e7, non-finite again two steps after
# resuming).
LOSS_SPIKE_FACTOR = 2.0
LOSS_SPIKE_NATS = 1.0
LOSS_MEAN_DECAY = 0.9  # running mean of step losses (exponential); spiking steps are left out of it


def train(job: TrainingJob) -> dict[str, Any]:
    """Run from ``job.state.step`` to ``job.max_steps``; returns the final metrics. Ctrl-C raises
    ``TrainingInterrupted`` (the step and the newest valid checkpoint)."""
    try:
        return _train(job)
    except KeyboardInterrupt:
        checkpoint = find_latest_checkpoint(job.run_dir, deep=False, quiet=True) if job.info.is_main else None
        raise TrainingInterrupted(job.state.step, checkpoint) from None


def _train(job: TrainingJob) -> dict[str, Any]:
    args, model, optimizer, state, info = job.args, job.model, job.optimizer, job.state, job.info
    accum = args.gradient_accumulation_steps
    max_norm = args.max_grad_norm if args.max_grad_norm > 0 else math.inf
    progress = tqdm(
        total=job.max_steps,
        initial=state.step,
        disable=args.disable_tqdm or not info.is_main,
        unit="step",
        desc="pretrain" if job.objective in LM_OBJECTIVES else job.objective,
        dynamic_ncols=True,
    )
    metrics: dict[str, Any] = {}
    model.train()
    # MLM: the head decodes only the labelled (~15%) positions; same loss, far fewer FLOPs (heads/lm.py).
    sparse_logits = {"logits_at_labels_only": True} if job.objective == "mlm" else {}
    clock = time.perf_counter()
    while state.step < job.max_steps:
        lr = set_learning_rate(optimizer, args.learning_rate * job.schedule(state.step))

        # ---- forward/backward over the accumulation window; gradients sync only on its last micro-step
        step_sums = torch.zeros(4, dtype=torch.float64, device=info.device)  # loss, correct, n, tokens
        extras: dict[str, float] = {}
        rows = 0  # sequences in this step on this rank
        for micro in range(accum):
            batch = {k: v.to(info.device, non_blocking=True) for k, v in next(job.train_batches).items()}
            rows += int(batch["input_ids"].shape[0])
            set_gradient_sync(model, micro == accum - 1)  # before the forward (build-nanogpt PR #30)
            with job.autocast():
                inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
                out = model(**inputs, **sparse_logits)
            aux_loss = getattr(out, "aux_loss", None)  # e.g. a MoE balancing loss
            loss = out.loss if aux_loss is None else out.loss + aux_loss
            job.scaler.scale(loss / accum).backward()
            step_sums += _micro_step_sums(out, batch, objective=job.objective, accum=accum)
            for key, value in _extra_metrics(out).items():  # MoE router losses and load, means over micro-steps
                extras[key] = extras.get(key, 0.0) + value / accum
        step_sums = all_reduce_sum(step_sums)
        if extras:  # every rank runs the same model, so the keys agree; sorted for the same order everywhere
            keys = sorted(extras)
            reduced = all_reduce_sum(torch.tensor([extras[k] for k in keys], dtype=torch.float64, device=info.device))
            extras = {k: v / info.world_size for k, v in zip(keys, reduced.tolist(), strict=True)}
        step_loss = step_sums[0].item() / info.world_size

        # ---- clip, then step unless the loss or the gradient is not finite
        job.scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        if math.isfinite(step_loss) and math.isfinite(grad_norm):
            job.scaler.step(optimizer)
            state.nonfinite_in_a_row = 0
            _track_loss(state, step_loss)
        else:
            state.nonfinite_steps += 1
            state.nonfinite_in_a_row += 1
            cause = f"non-finite loss {step_loss} / grad norm {grad_norm}"
            if job.scaler.is_enabled() and math.isfinite(step_loss):  # fp16: overflow at this loss scale
                state.overflow_steps += 1
                cause = f"gradient overflow at loss scale {job.scaler.get_scale():g} (the scale backs off)"
            else:
                state.troubled_since_save = f"step {state.step + 1}: {cause}"
            state.window["skipped"] = state.window.get("skipped", 0) + 1
            state.window["skip_reason"] = cause
            if info.is_main:
                progress.write(f"step {state.step + 1}: {cause}, skipped")
            if state.nonfinite_in_a_row >= args.max_nonfinite_steps:
                progress.close()
                healthy = _healthy_checkpoint(job)
                advice = (
                    f"resume from the newest healthy checkpoint with --resume_from_checkpoint {healthy}"
                    if healthy is not None
                    else "start again (no healthy checkpoint was saved)"
                )
                raise NonFiniteLossError(
                    f"stopping at step {state.step + 1}: {state.nonfinite_in_a_row} consecutive steps skipped "
                    f"(--max_nonfinite_steps), with a non-finite loss or gradient (last: {cause}). Lower "
                    f"--learning_rate or raise --warmup_steps, use --bf16 instead of --fp16, then {advice}"
                )
        job.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        now = time.perf_counter()
        state.elapsed_s += now - clock
        clock = now
        progress.update(1)

        # ---- log means over the window since the last log line
        window = state.window
        if math.isfinite(step_loss):
            window["loss"] += step_loss
            window["steps"] += 1
        window["correct"] += step_sums[1].item()
        window["n"] += step_sums[2].item()
        window["tokens"] += step_sums[3].item()
        window["samples"] += rows * info.world_size
        window["all_steps"] += 1
        for key, value in extras.items():
            window[f"extra/{key}"] = window.get(f"extra/{key}", 0.0) + value
        state.tokens += int(step_sums[3].item())
        if (
            state.step % args.logging_steps == 0
            or state.step == job.max_steps
            or (args.logging_first_step and state.step == 1)
        ):
            # no finite loss in the window: no train_loss at all (a 0.0 would read as a perfect model)
            mean_loss = window["loss"] / window["steps"] if window["steps"] else None
            metrics = {} if mean_loss is None else {"train_loss": mean_loss}
            metrics |= {"learning_rate": lr, "grad_norm": grad_norm}
            if window.get("skipped"):
                metrics |= {"skipped_steps": int(window["skipped"]), "skip_reason": window["skip_reason"]}
            if job.objective in LM_OBJECTIVES:  # MLM: masked-token accuracy; CLM: next-token top-1 (seed 003's Acc@1)
                metrics["train_accuracy"] = window["correct"] / max(window["n"], 1)
            if job.objective == "clm" and mean_loss is not None:
                metrics["train_perplexity"] = math.exp(min(mean_loss, 700.0))
            window_time = max(state.elapsed_s - window["elapsed_at_start"], 1e-9)
            metrics["tokens_per_s"] = window["tokens"] / window_time
            metrics["samples_per_s"] = window["samples"] / window_time  # sequences/s, all ranks (seed 003's "FPS")
            metrics |= {"tokens": state.tokens, "elapsed_s": state.elapsed_s, "nonfinite_steps": state.nonfinite_steps}
            if job.scaler.is_enabled():
                metrics["overflow_steps"] = state.overflow_steps
            metrics |= {k[6:]: v / window["all_steps"] for k, v in window.items() if k.startswith("extra/")}
            if job.logger is not None:
                job.logger.log(state.step, metrics)
            shown = "skipped" if mean_loss is None else f"{mean_loss:.4f}"
            progress.set_postfix(loss=shown, lr=f"{lr:.2e}", refresh=False)
            state.window = empty_window(state.elapsed_s)

        # ---- evaluate and save
        last = state.step == job.max_steps
        improved = False
        if (
            args.do_eval
            and (job.eval_batches is not None or job.evaluate is not None)
            and ((args.eval_steps is not None and state.step % args.eval_steps == 0) or last)
        ):
            state.last_eval = run_evaluation(job)
            metrics |= state.last_eval
            improved = _track_best(job)
        if state.step % args.save_steps == 0 or last or improved:
            save_training_checkpoint(job)
        clock = time.perf_counter()  # evaluation and saving do not count as training time

    progress.close()
    return {
        "step": state.step,
        "tokens": state.tokens,
        "elapsed_s": state.elapsed_s,
        "nonfinite_steps": state.nonfinite_steps,
        **({"overflow_steps": state.overflow_steps} if job.scaler.is_enabled() else {}),
        **metrics,
        **state.last_eval,
    }


def _track_loss(state: TrainState, loss: float) -> None:
    """Fold an applied step's loss into the running mean, or mark the next checkpoint unhealthy if it spiked."""
    mean = state.loss_mean
    if mean is not None and loss > LOSS_SPIKE_FACTOR * mean and loss - mean > LOSS_SPIKE_NATS:
        state.troubled_since_save = f"step {state.step + 1}: loss {loss:.4g} spiked (running mean {mean:.4g})"
        return
    state.loss_mean = loss if mean is None else LOSS_MEAN_DECAY * mean + (1 - LOSS_MEAN_DECAY) * loss


def _healthy_checkpoint(job: TrainingJob) -> Path | None:
    """The newest healthy checkpoint if it is still on disk and valid, else None."""
    if job.state.healthy_step is None:
        return None
    path = job.run_dir / f"checkpoint-{job.state.healthy_step}"
    return path if verify_checkpoint(path, deep=False) is None else None


def _track_best(job: TrainingJob) -> bool:
    """Record the evaluation in ``state.best`` if it beats the best so far (strictly: ties keep the earlier)."""
    name = job.metric_for_best_model
    if name is None:
        return False
    if name not in job.state.last_eval:
        raise ValueError(f"--metric_for_best_model {name!r} is not one of {sorted(job.state.last_eval)}")
    value = float(job.state.last_eval[name])
    best = job.state.best.get("value")
    if best is not None and (value <= best if job.greater_is_better else value >= best):
        return False
    job.state.best = {"step": job.state.step, "value": value}
    return True


def _micro_step_sums(out: Any, batch: dict[str, Tensor], *, objective: str, accum: int) -> Tensor:
    """(loss / accum, correct predictions, predicted positions, real tokens) of one micro-batch, float64; the
    prediction counts are an LM's (0 for fine-tuning objectives)."""
    device = out.loss.device
    if objective in LM_OBJECTIVES:
        correct, predicted = count_output_predictions(out, batch["labels"], objective=objective)
    else:
        correct = predicted = torch.zeros((), device=device)
    mask = batch.get("attention_mask")
    tokens = mask.sum() if mask is not None else torch.tensor(batch["input_ids"].numel(), device=device)
    return torch.stack([out.loss.detach().double() / accum, correct.double(), predicted.double(), tokens.double()])


def _extra_metrics(out: Any) -> dict[str, float]:
    """Scalars a model reports beside its loss (``LMOutput.metrics``, ``aux_loss``), e.g. MoE balance and z-loss."""
    extra = {key: float(value) for key, value in getattr(out, "metrics", {}).items()}
    if getattr(out, "aux_loss", None) is not None:
        extra["aux_loss"] = float(out.aux_loss.detach())
    return extra


def run_evaluation(job: TrainingJob) -> dict[str, Any]:
    """Held-out metrics (all ranks take part), logged by rank 0. MLM adds the cloze probe's top-1/top-5
    (``lmforge.eval.probe``); CLM adds a few sampled continuations and their degeneration measures
    (``lmforge.eval.degeneration``: distinct-1/2, longest repeated span, share of blank outputs)."""
    if job.evaluate is not None:
        result = job.evaluate()
    else:
        assert job.eval_batches is not None
        result = evaluate_lm(
            job.model, job.eval_batches(), objective=job.objective, device=job.info.device, autocast=job.autocast
        )
    model = unwrap(job.model)  # past DDP / torch.compile wrappers: the LanguageModel itself
    if job.objective == "mlm" and job.tokenizer is not None:
        # Every rank scores (FSDP forwards are collectives); deterministic and RNG-free, so resume stays exact.
        probe = score_probe(model, job.tokenizer, job.probe_items, autocast=job.autocast)
        result |= {f"eval_{k}": v for k, v in probe.items() if k.startswith("probe_")}
    if job.objective == "clm" and job.sample_prompts and job.decode is not None:
        # Own generator (the global RNG is untouched); the cached sampler of lmforge.generation on the bare model.
        generator = torch.Generator(device=job.info.device).manual_seed(job.args.seed)
        max_new = job.args.generation_max_new_tokens
        keep = max(1, job.args.max_seq_length - max_new)  # prompt + continuation within the training length
        prompts = [prompt[-keep:] for prompt in job.sample_prompts]
        decode = job.decode
        continuations, quality = continuation_quality(
            model, prompts, decode=lambda ids: decode(ids, skip_special_tokens=True), max_new_tokens=max_new,
            generator=generator, eos_token_id=job.eos_token_id, device=job.info.device,
        )  # fmt: skip
        result |= {f"eval_{k}": v for k, v in quality.items() if k != "samples"}
        for i, (prompt, new) in enumerate(zip(prompts, continuations, strict=True)):
            text = f"{decode(prompt)} || {decode(new)}"
            result[f"eval_sample_{i}"] = text
            if job.logger is not None:
                job.logger.log_text(job.state.step, f"samples/{i}", text)
    if job.logger is not None:
        job.logger.log(job.state.step, result)
    return result


def save_training_checkpoint(job: TrainingJob) -> Path | None:
    """Write ``checkpoint-STEP`` (collective: every rank contributes its loader and RNG state); rank 0 writes."""
    weights = model_state_for_save(job.model)
    optimizer_state = optimizer_state_for_save(job.model, job.optimizer)
    if job.info.is_main:  # rank 0 holds the full weights (FSDP gathers them there)
        finite = all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())
        if finite and not job.state.troubled_since_save:
            job.state.healthy_step = job.state.step
        elif job.logger is not None:
            reason = job.state.troubled_since_save or "non-finite weights"
            job.logger.log(job.state.step, {"unhealthy_checkpoint": job.state.step, "unhealthy_reason": reason})
        job.state.troubled_since_save = ""
    per_rank = gather_objects({"loader": job.train_batches.state_dict(), "rng": capture_rng_state()}, job.info)
    path = None
    if job.info.is_main:
        training_state = {
            "train": job.state.state_dict(),
            "optimizer": optimizer_state,
            "scaler": job.scaler.state_dict(),
            "ranks": per_rank,
            "world_size": job.info.world_size,
        }
        path = save_checkpoint(
            job.run_dir,
            job.state.step,
            weights=weights,
            model_info=job.model_info,
            training_state=training_state,
            tokenizer_dir=job.tokenizer_dir,
        )
        # keep the best checkpoint by --metric_for_best_model besides the newest save_total_limit
        # and the newest healthy one (the one to go back to if the run diverges)
        protect = {job.state.best.get("step"), job.state.healthy_step} - {None}
        rotate_checkpoints(job.run_dir, job.args.save_total_limit, protect=protect)
        if job.logger is not None:
            job.logger.flush()
        plot_loss(job.run_dir)
    barrier()
    return path
