"""The loop itself, with stand-in loaders: overfitting one batch, accumulation maths, non-finite steps."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch import nn

import lmforge
from lmforge.heads.lm import LMOutput
from lmforge.models.registry import config_to_dict
from lmforge.train.config import PretrainArgs
from lmforge.train.distributed import DistInfo
from lmforge.train.loop import NonFiniteLossError, TrainingJob, TrainState, train
from lmforge.train.optim import build_optimizer, make_schedule

CPU = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


class Batches:
    """Random CLM blocks of a fixed shape from an explicit generator (``same=True``: one batch forever)."""

    def __init__(self, *, batch_size: int, length: int = 12, vocab: int = 100, same: bool = False, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)
        self.shape, self.vocab, self.same, self.fixed = (batch_size, length), vocab, same, None

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.same and self.fixed is not None:
            return self.fixed
        ids = torch.randint(5, self.vocab, self.shape, generator=self.generator)
        self.fixed = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        return self.fixed

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}


class Halves:
    """Each 4-row batch of ``source`` as two 2-row micro-batches, in order."""

    def __init__(self, source: Batches):
        self.source, self.pending = source, []

    def __next__(self) -> dict[str, torch.Tensor]:
        if not self.pending:
            full = next(self.source)
            self.pending = [{k: v[2:] for k, v in full.items()}, {k: v[:2] for k, v in full.items()}]
        return self.pending.pop()

    def state_dict(self) -> dict:
        return self.source.state_dict()


def _job(model: nn.Module, batches, tmp_path: Path, *, objective: str = "clm", **kw) -> TrainingJob:
    args = PretrainArgs(output_dir=str(tmp_path), disable_tqdm=True, save_steps=10_000, logging_steps=1, **kw)
    optimizer = build_optimizer(
        model,
        name=args.optim,
        lr=args.learning_rate,
        weight_decay=args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )
    config = getattr(model, "config", None)
    return TrainingJob(
        args=args,
        model=model,
        optimizer=optimizer,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        schedule=make_schedule(args.lr_scheduler_type, total_steps=args.max_steps),
        train_batches=batches,
        eval_batches=None,
        autocast=nullcontext,
        state=TrainState(),
        info=CPU,
        max_steps=args.max_steps,
        objective=objective,
        run_dir=tmp_path,
        model_info={"model": "bert", "task": objective, "config": config_to_dict(config) if config else {}},
    )


def test_overfits_one_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = lmforge.build_model(
        "bert", task="clm", preset="tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    job = _job(
        model,
        Batches(batch_size=2, same=True),
        tmp_path,
        max_steps=50,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
    )
    first = model(**next(job.train_batches)).loss.item()
    result = train(job)
    assert first > 4.0 and result["train_loss"] < 1.0, (first, result["train_loss"])


def test_accumulation_equals_a_bigger_batch(tmp_path: Path) -> None:
    """2 micro-batches of b == 1 batch of 2b when every micro-batch predicts the same number of tokens."""
    results = []
    for accumulation, batch_size in ((2, 2), (1, 4)):
        torch.manual_seed(0)
        model = lmforge.build_model(
            "bert", task="clm", preset="tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
        )
        batches = Batches(batch_size=4, seed=1)
        if accumulation == 2:
            batches = Halves(batches)
        job = _job(
            model,
            batches,
            tmp_path / str(accumulation),
            max_steps=3,
            learning_rate=1e-3,
            gradient_accumulation_steps=accumulation,
            per_device_train_batch_size=batch_size,
        )
        train(job)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-6)


class SometimesNaN(nn.Module):
    """A linear 'LM' whose loss is NaN on the calls listed in ``bad``."""

    def __init__(self, bad: set[int]):
        super().__init__()
        self.embedding = nn.Embedding(100, 100)
        self.bad, self.calls = bad, 0

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **_) -> LMOutput:
        self.calls += 1
        logits = self.embedding(input_ids)
        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
        if self.calls in self.bad:
            loss = loss * float("nan")
        return LMOutput(loss=loss, logits=logits, hidden_states=logits)


def test_nonfinite_steps_are_skipped_and_counted(tmp_path: Path) -> None:
    model = SometimesNaN(bad={2, 3})
    job = _job(model, Batches(batch_size=2), tmp_path, max_steps=5, learning_rate=1e-2)
    weights = []
    job.train_batches = Batches(batch_size=2)
    original_step = job.optimizer.step

    def recording_step(*args, **kwargs):
        weights.append(model.embedding.weight.detach().clone())
        return original_step(*args, **kwargs)

    job.optimizer.step = recording_step
    result = train(job)
    assert result["nonfinite_steps"] == 2 and result["step"] == 5
    assert len(weights) == 3  # the optimizer stepped only on the 3 finite steps
    assert torch.isfinite(model.embedding.weight).all()


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(tmp_path: Path) -> None:
    model = SometimesNaN(bad=set(range(3, 100)))
    job = _job(model, Batches(batch_size=2), tmp_path, max_steps=50, max_nonfinite_steps=4)
    with pytest.raises(NonFiniteLossError, match="4 consecutive steps"):
        train(job)
    assert job.state.step == 5 and job.state.nonfinite_steps == 4  # the step that stopped the run is not done
