"""``lmforge pretrain``: resolve data, tokenizer and model, build (or restore) the ``TrainingJob``, run the loop.

Order of construction matters for exact resume and for DDP: the model is initialised from ``--seed`` *before*
per-rank seeding (every rank and every restart builds identical weights), checkpoint weights are loaded before
wrapping (FSDP shards what it is given), the optimizer is built over the wrapped parameters, and the RNG states of
the checkpoint are restored last, right before the loop.

Data: ``--train_dir`` (or HF's ``--train_file``) is a ``lmforge prepare all`` directory (``tokenizer/`` +
``shards/{train,validation}``), a ``shards/`` directory or one split directory. A raw text/jsonl file is first
prepared into ``OUTPUT_DIR/data`` (rank 0, others wait). The tokenizer's fingerprint must match the shards'.

Deviations from HF ``run_mlm.py``: sequence length and packing are fixed when the shards are prepared (MLM
shards pack documents into full sequences unless prepared with ``--line_by_line true``, ``docs/pipeline/shards.md``);
``--max_seq_length`` can only shorten them (the collator cuts, keeping [SEP]). ``--dataloader_num_workers`` is
accepted and ignored (batches come from memory-mapped shards in-process).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from lmforge.data.collate import CLMCollator, MLMCollator
from lmforge.data.loader import ShardLoader
from lmforge.data.shards import INDEX_FILE, check_fingerprint, open_shards
from lmforge.data.tokenizer import LMTokenizer, load_tokenizer
from lmforge.data.tokenizer_import import resolve_tokenizer_name
from lmforge.data.tokenizer_spec import META_FILE
from lmforge.eval.probe import load_probe
from lmforge.models.footprint import TRAINING_BYTES_PER_PARAMETER, check_memory
from lmforge.models.loading import LoadedModel, check_source, load_model
from lmforge.models.registry import config_to_dict
from lmforge.train.config import PretrainArgs
from lmforge.train.distributed import DistInfo, barrier, unwrap
from lmforge.train.job import build_training_job, open_run_dir, place_model, training_session, write_run_record
from lmforge.train.loop import TrainingJob, run_evaluation, train
from lmforge.train.metrics import plot_loss
from lmforge.train.rng import restore_rng_state

__all__ = ["DataPaths", "build_job", "format_summary", "model_source", "pretrain", "resolve_data"]


@dataclass(frozen=True)
class DataPaths:
    train: Path
    validation: Path | None
    tokenizer: Path


def pretrain(args: PretrainArgs) -> dict[str, Any]:
    """Train (and/or evaluate) as ``args`` say; returns the final metrics (also in OUTPUT_DIR/all_results.json)."""
    with training_session(args) as info:
        job = build_job(args, info)
        if args.do_train:
            results = train(job)
        elif job.eval_batches is not None:
            results = {"step": job.state.step, **run_evaluation(job)}
        else:
            raise ValueError("nothing to do: --do_train false and no validation split to evaluate on")
        if info.is_main:
            (job.run_dir / "all_results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
            plot_loss(job.run_dir)
            if job.logger is not None:
                job.logger.close()
            print(f"pretrain finished: {format_summary(results)}", flush=True)
        return results


def format_summary(results: dict[str, Any]) -> str:
    """``{'step': 6, 'learning_rate': 1e-05, ...}`` with 4 significant digits (rounding to 4 decimals printed a
    learning rate of 1e-05 as 0.0)."""
    shown = (f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in results.items())
    return "{" + ", ".join(shown) + "}"


# ----------------------------------------------------------------------------- data


def _prepare_raw_file(path: Path, args: PretrainArgs, run_dir: Path, info: DistInfo) -> Path:
    """``--train_file corpus.txt``: run ``prepare all`` once (rank 0) into OUTPUT_DIR/data."""
    from lmforge.data.prepare import PrepareAllArgs, prepare_all

    out = run_dir / "data"
    if info.is_main and not (out / "shards" / "train" / INDEX_FILE).is_file():
        prepare_args = PrepareAllArgs(
            input=[str(path)],
            output_dir=str(out),
            objective=args.objective or "mlm",
            max_seq_length=args.max_seq_length,
            line_by_line=args.line_by_line,
            block_size=args.max_seq_length,
            validation_split_percentage=args.validation_split_percentage,
            validation_file=args.validation_file,
            train_ref_file=args.train_ref_file,
            num_proc=args.preprocessing_num_workers or 1,
            seed=args.seed,
            tokenizer_name=args.tokenizer_dir or args.tokenizer_name,  # None: build the default char tokenizer
            progress=not args.disable_tqdm,
        )
        prepare_all(prepare_args)
    barrier()
    return out


def resolve_data(args: PretrainArgs, *, run_dir: Path, info: DistInfo) -> DataPaths:
    """Find the train/validation shards and the tokenizer from ``--train_dir``/``--train_file``/``--tokenizer_*``."""
    source = args.train_dir or args.train_file
    if source is None:
        raise ValueError("pass --train_dir (a `lmforge prepare all` output directory) or --train_file")
    path = Path(source)
    if not path.exists():
        raise ValueError(f"training data {source!r} does not exist")
    if path.is_file():
        path = _prepare_raw_file(path, args, run_dir, info)

    def split(directory: Path) -> Path | None:
        return directory if (directory / INDEX_FILE).is_file() else None

    if split(path / "shards" / "train"):
        train, validation, tokenizer = (
            path / "shards" / "train",
            split(path / "shards" / "validation"),
            path / "tokenizer",
        )
    elif split(path / "train"):
        train, validation, tokenizer = path / "train", split(path / "validation"), path.parent / "tokenizer"
    elif split(path):
        sibling = path.parent / "validation"
        train, validation = path, (split(sibling) if sibling != path else None)
        tokenizer = path.parent.parent / "tokenizer"
    else:
        raise ValueError(
            f"{str(path)!r} holds no shards (no {INDEX_FILE} in it, in train/ or in shards/train/); prepare data with "
            "`lmforge prepare all --inputs FILES --output_dir D` and pass --train_dir D"
        )
    chosen = args.tokenizer_dir
    if chosen is None and args.tokenizer_name is not None:  # a local lmforge or HF directory; a hub id: ValueError
        chosen = str(resolve_tokenizer_name(args.tokenizer_name))
    if chosen is not None:
        tokenizer = Path(chosen)
    if not tokenizer.is_dir():
        raise ValueError(f"no tokenizer directory found for {str(path)!r}; pass --tokenizer_dir")
    if not (tokenizer / META_FILE).is_file():  # a Hugging Face directory (weights too, maybe): checkpoints copy the
        imported = load_tokenizer(tokenizer)  # tokenizer files only, saved once into the run (fingerprint pinned)
        tokenizer = run_dir / "tokenizer"
        if info.is_main:
            shutil.rmtree(tokenizer, ignore_errors=True)
            imported.save(tokenizer)
        barrier()
    return DataPaths(train=train, validation=validation, tokenizer=tokenizer)


# ----------------------------------------------------------------------------- model


def model_source(args: PretrainArgs) -> tuple[str, bool]:
    """(what names the model, whether only its config is used): ``--model_name_or_path`` (weights), else
    ``--config_name`` (architecture from scratch), else ``--model``. Nothing named is an error: lmforge never picks
    an architecture by itself (a ``run_mlm_wwm.py`` command line naming none fails here, before any work)."""
    if args.model_name_or_path and args.config_name and args.model_name_or_path != args.config_name:
        raise ValueError(
            f"--config_name {args.config_name!r} and --model_name_or_path {args.model_name_or_path!r} differ; the "
            "architecture comes from the weights' own config, pass only --model_name_or_path"
        )
    named = [(args.model_name_or_path, False), (args.config_name, True), (args.model, False)]
    for source, config_only in named:
        if source:
            check_source(source)  # a typo or a hub id (nothing is downloaded) fails here, before any work
            return source, config_only
    raise ValueError(
        "no model named: pass --model (a registered architecture, `lmforge models`), --model_name_or_path (a "
        "run, checkpoint, export or Hugging Face directory to continue from) or --config_name (a config directory)"
    )


def _initial_model(args: PretrainArgs, tokenizer: LMTokenizer, task: str, info: DistInfo) -> LoadedModel:
    """The model to start from (``lmforge.models.loading``): a random init of a registered architecture or of a
    config directory, or the weights of a run/checkpoint/export/HF directory (a new ``task`` head if it has none)."""
    source, config_only = model_source(args)
    return load_model(
        source, model=args.model if source != args.model else None, task=task, new_head=True,
        preset=args.model_preset, overrides=args.model_overrides, tokenizer=tokenizer, config_only=config_only,
        quiet=not info.is_main,
    )  # fmt: skip


def _check_length(config: Any, sequence_length: int) -> None:
    limit = getattr(config, "max_position_embeddings", None)
    absolute = getattr(config, "position_embedding_type", None) == "absolute"
    if limit is not None and absolute and sequence_length > limit:
        raise ValueError(
            f"sequences are {sequence_length} tokens but the model has {limit} positions; lower --max_seq_length "
            f"or pass --model_overrides '{{\"max_position_embeddings\": {sequence_length}}}'"
        )


# ----------------------------------------------------------------------------- the job


def build_job(args: PretrainArgs, info: DistInfo) -> TrainingJob:
    model_source(args)  # fail on a command line naming no model before touching the output directory or data
    run_dir, resume = open_run_dir(args, info)
    if args.full_determinism:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if args.tf32 is not None and info.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32

    # ---- data
    paths = resolve_data(args, run_dir=run_dir, info=info)
    tokenizer = load_tokenizer(paths.tokenizer)
    train_shards = open_shards(paths.train)
    check_fingerprint(train_shards, tokenizer)
    objective = args.objective or train_shards.objective
    if objective != train_shards.objective:
        raise ValueError(f"--objective {objective} but {paths.train} was prepared for {train_shards.objective}")
    if args.line_by_line and objective == "clm":
        raise ValueError("--line_by_line is for mlm; clm blocks always pack documents (HF run_clm.py)")
    if args.line_by_line and train_shards.layout != "document":
        raise ValueError(
            f"--line_by_line true but {paths.train} holds packed sequences; prepare the data with "
            "`lmforge prepare all --line_by_line true` (or drop the flag)"
        )
    if train_shards.layout == "packed" and args.max_seq_length < train_shards.sequence_length:
        lost = 1 - args.max_seq_length / train_shards.sequence_length
        raise ValueError(
            f"{paths.train} holds packed sequences of {train_shards.sequence_length} tokens but --max_seq_length is "
            f"{args.max_seq_length}: {lost:.0%} of every sequence would be cut away unseen; pass --max_seq_length "
            f"{train_shards.sequence_length} or prepare the data at {args.max_seq_length} (`lmforge prepare all "
            f"--{'block_size' if objective == 'clm' else 'max_seq_length'} {args.max_seq_length}`)"
        )
    sequence_length = min(args.max_seq_length, train_shards.sequence_length)
    if objective == "mlm":
        collator = MLMCollator(
            tokenizer, mlm_probability=args.mlm_probability, mode=args.wwm_mode, max_seq_length=sequence_length
        )
    else:
        collator = CLMCollator(tokenizer, max_length=sequence_length)
    loader = ShardLoader(
        train_shards,
        batch_size=args.per_device_train_batch_size,
        collator=collator,
        seed=args.seed,
        rank=info.rank,
        world_size=info.world_size,
        shuffle=True,
        drop_last=True,
    )
    eval_batches = _eval_batches(args, paths, tokenizer, collator, info)

    # ---- model (identical on every rank and every restart: seeded before per-rank seeding)
    task = objective
    initial = _initial_model(args, tokenizer, task, info)
    arch, config = initial.arch, initial.config
    _check_length(config, sequence_length)
    check_memory(arch, config, task, bytes_per_parameter=TRAINING_BYTES_PER_PARAMETER, device=info.device,
                 purpose="training with AdamW (weights, gradients, two moments)")  # fmt: skip
    torch.manual_seed(args.seed)
    model = initial.build()  # the seeded random init, or the source's weights (and a seeded new head if needed)
    model = place_model(model, args, info, resume=resume, fsdp=bool(args.fsdp), torch_compile=args.torch_compile)

    # ---- optimisation, restored training state, logger
    model_info = {"model": arch, "task": task, "config": config_to_dict(unwrap(model).config)}
    job, rng_state = build_training_job(
        args, info, model, loader, resume=resume, run_dir=run_dir, objective=objective, model_info=model_info,
        eval_batches=eval_batches, tokenizer_dir=paths.tokenizer, decode=tokenizer.decode,
        eos_token_id=tokenizer.eos_token_id, optimizer_options={"lamb_bias_correction": args.lamb_bias_correction},
        schedule_options={"min_lr_ratio": args.min_lr_ratio, "milestones": args.lr_milestones},
    )  # fmt: skip

    # ---- run directory
    resolved = replace(
        args,
        train_dir=str(paths.train.parent.parent if paths.train.parent.name == "shards" else paths.train),
        train_file=None,
        validation_file=None,  # consumed: the prepared data below holds the split and the word boundaries
        train_ref_file=None,
        tokenizer_dir=str(paths.tokenizer),
        tokenizer_name=None,
        objective=objective,
        model=arch,
    )
    write_run_record(run_dir, resolved.to_dict(), info, model_config=model_info,
                     data={k: str(v) for k, v in vars(paths).items()},
                     parameters=sum(p.numel() for p in unwrap(model).parameters()))  # fmt: skip
    if objective == "mlm" and eval_batches is not None:
        job.tokenizer, job.probe_items = tokenizer, load_probe()  # the cloze probe at every evaluation
    if objective == "clm" and eval_batches is not None and args.num_generation_samples:
        job.sample_prompts = _sample_prompts(paths.validation, args.num_generation_samples)
    if rng_state is not None:
        restore_rng_state(rng_state)  # last: nothing may draw random numbers after this
    return job


def _eval_batches(args: PretrainArgs, paths: DataPaths, tokenizer: LMTokenizer, collator: Any, info: DistInfo):
    """A function returning a fresh pass over (at most --max_eval_samples of) the validation split, or None."""
    if not args.do_eval or paths.validation is None:
        return None
    shards = open_shards(paths.validation)
    check_fingerprint(shards, tokenizer)
    per_rank = len(shards) // info.world_size
    if per_rank == 0:
        return None
    batch_size = min(args.per_device_eval_batch_size, per_rank)
    # several ranks drop the last partial batch: every rank must run as many forwards (FSDP's are collectives)
    loader = ShardLoader(
        shards,
        batch_size=batch_size,
        collator=collator,
        seed=args.seed,
        rank=info.rank,
        world_size=info.world_size,
        shuffle=False,
        drop_last=info.enabled,
    )
    limit = len(loader)
    if args.max_eval_samples is not None:
        limit = max(1, min(limit, args.max_eval_samples // (batch_size * info.world_size)))
    return lambda: islice(loader.iter_epoch(), limit)


def _sample_prompts(validation: Path | None, count: int, length: int = 16) -> list[list[int]]:
    if validation is None:
        return []
    shards = open_shards(validation)
    return [shards[i]["input_ids"][:length].tolist() for i in range(min(count, len(shards)))]
