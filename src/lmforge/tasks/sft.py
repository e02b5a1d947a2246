"""``lmforge finetune sft --model RUN --data_dir DIR``: supervised fine-tuning of a causal LM on conversations.

Data: ``DIR/train.jsonl`` (and ``DIR/dev.jsonl`` if present; ``.json`` also read), one conversation per line:
``{"messages": [{"role": "system" | "user" | "assistant", "content": str}, ...]}`` or
``{"prompt": str, "response": str}`` (optionally ``"system": str``). The chat template (``data/chat_template.py``)
turns it into ids; the loss is on the assistant turns' tokens and their end-of-turn separator only (``-100``
elsewhere). Bad rows (missing fields, an unknown role, an empty response, no assistant turn, a system message after
the first turn, no response token left within ``--max_seq_length``) are dropped and counted per reason, with the
file and line of the first one, in the printed summary and ``report.json``; a line that is not a JSON object, or a
split left empty, is a one-line error. Conversations longer than ``--max_seq_length`` are cut at the end (counted).

Packing: on backbones whose ``attention_mask`` may be the attention pattern itself (``PACKING_ARCHS``: GPT, and with
it the LLaMA-style presets), short conversations are packed into rows of ``--max_seq_length`` tokens (best-fit
decreasing). Each token attends only within its own conversation (block-diagonal causal mask) and positions
restart at 0 for each, so a packed row gives every conversation the loss it has alone (tested to 1e-5). The
segment index of each token (1, 2, ... per row; 0 = padding; T5X's ``segment_ids``) travels in the batch's
``token_type_ids``: the training loop passes a fixed set of keys (``train/loop.MODEL_INPUTS``) and a causal LM has
no token types. Other backbones (BERT/GAU-alpha/FLASH/Reformer ``clm``) train one conversation per row, padded.

Training is the fine-tuning run of ``tasks/finetune.py`` (``train_keeping_best``: a ``FeatureLoader`` and the job
of ``train/job.py``: optimizer, schedule, exact resume) run by the one loop (``train/loop.py``); dev metrics are
``eval/lm.evaluate_lm``'s (loss, next-token accuracy and perplexity on the response tokens), and the checkpoint
with the lowest ``eval_loss`` is kept. The
checkpoints are plain causal-LM checkpoints (``config.json`` task ``clm``, the ``LanguageModel`` state dict), so
``lmforge generate``, ``evaluate lm``, ``export`` and a second SFT read them as any CLM run; the run's
``tokenizer/`` holds ``chat_template.json``, which every checkpoint and export copies. ``lmforge generate RUN
--chat`` reads it back. Deviation: packing is always on where supported (FinetuneArgs has no switch for it).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lmforge.data.chat_template import ROLES, ChatTemplate, load_chat_template
from lmforge.heads.lm import IGNORE_INDEX, LanguageModel, LMOutput, clm_loss
from lmforge.nn.moe import pop_router_losses
from lmforge.tasks.common import collate, encode_texts, json_object

if TYPE_CHECKING:
    from lmforge.tasks.finetune import FinetuneArgs
    from lmforge.train.distributed import DistInfo
    from lmforge.train.loop import TrainingJob

__all__ = [
    "PACKING_ARCHS",
    "SFTExample",
    "SFTModel",
    "SplitCounts",
    "finetune_sft",
    "pack_examples",
    "parse_conversation",
    "read_sft_split",
    "segment_keep",
    "segment_positions",
]

# Backbones whose forward takes a (B, 1, T, S) attention pattern and position_ids (models/gpt/model.py).
PACKING_ARCHS = ("gpt",)
SPLIT_FILES = {"train": ("train.jsonl", "train.json"), "dev": ("dev.jsonl", "dev.json")}


@dataclass
class SFTExample:
    input_ids: list[int]
    labels: list[int]  # aligned with input_ids; -100 = no loss (the CLM loss shifts them)
    where: str  # "file:line"


@dataclass
class SplitCounts:
    lines: int = 0
    examples: int = 0
    truncated: int = 0  # kept, cut at --max_seq_length
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    first: dict[str, str] = field(default_factory=dict)  # reason -> "file:line (detail)" of its first row

    def drop(self, reason: str, where: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.first.setdefault(reason, where)


# ----------------------------------------------------------------------------- reading


def parse_conversation(record: dict[str, Any]) -> tuple[list[dict[str, str]] | None, str, str]:
    """``(messages, "", "")`` of a well-formed row, else ``(None, reason, detail)``; reasons are the report's keys."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            return None, "messages not a non-empty list", ""
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                return None, "message without role or content", f"message {i}"
            role, content = message["role"], message["content"]
            if role not in ROLES:
                return None, "unknown role", f"role {role!r}; roles are {', '.join(ROLES)}"
            if not isinstance(content, str) or not content.strip():
                return None, "empty response" if role == "assistant" else "empty content", f"message {i}"
            if role == "system" and i > 0:
                return None, "system message not first", f"message {i}"
        if not any(m["role"] == "assistant" for m in messages):
            return None, "no assistant turn", ""
        return [{"role": m["role"], "content": m["content"]} for m in messages], "", ""
    prompt, response, system = record.get("prompt"), record.get("response"), record.get("system")
    if not isinstance(prompt, str) or not isinstance(response, str):
        missing = [k for k, v in (("prompt", prompt), ("response", response)) if not isinstance(v, str)]
        return None, "missing field", f"no messages, no string {' or '.join(missing)}"
    if not response.strip():
        return None, "empty response", ""
    if not prompt.strip() or (system is not None and (not isinstance(system, str) or not system.strip())):
        return None, "empty content", "prompt or system"
    head = [{"role": "system", "content": system}] if system is not None else []
    return [*head, {"role": "user", "content": prompt}, {"role": "assistant", "content": response}], "", ""


def read_sft_split(
    path: Path, tokenizer: Any, template: ChatTemplate, *, max_seq_length: int
) -> tuple[list[SFTExample], SplitCounts]:
    """Encoded conversations of one JSON-lines file and its counts (see the module docstring)."""
    counts, rows = SplitCounts(), []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        counts.lines += 1
        where = f"{path}:{number}"
        messages, reason, detail = parse_conversation(json_object(line, where))
        if messages is None:
            counts.drop(reason, f"{where}" + (f" ({detail})" if detail else ""))
        else:
            rows.append((messages, where))
    # One encode_batch call for every message of the file (the fast path of data/lm_tokenizer.py).
    encoded = iter(encode_texts(tokenizer, [m["content"] for messages, _ in rows for m in messages]))
    examples = []
    for messages, where in rows:
        turns = [(m["role"], next(encoded)[0]) for m in messages]
        if any(template.separator_id in ids for _, ids in turns):  # codepoint tokenizers: a private-use char
            counts.drop("content contains the separator token", where)
            continue
        ids, labels = template.render_ids(turns)
        if len(ids) > max_seq_length:
            ids, labels = ids[:max_seq_length], labels[:max_seq_length]
            if all(label == IGNORE_INDEX for label in labels[1:]):  # labels[0] is never predicted
                counts.drop(f"no response token within --max_seq_length {max_seq_length}", where)
                continue
            counts.truncated += 1
        examples.append(SFTExample(ids, labels, where))
    counts.examples = len(examples)
    return examples, counts


def _split_file(data_dir: Path, split: str) -> Path | None:
    return next((data_dir / name for name in SPLIT_FILES[split] if (data_dir / name).is_file()), None)


# ----------------------------------------------------------------------------- packing


def pack_examples(examples: list[SFTExample], *, max_length: int, pack: bool = True) -> list[dict[str, list[int]]]:
    """Features for ``tasks.common.collate``: ``input_ids``, ``labels`` and ``token_type_ids`` = the 1-based index
    of each token's example within its row. ``pack``: best-fit decreasing into rows of at most ``max_length``
    tokens (longest first, each into the fullest row it fits; deterministic); else one example per row."""
    if not pack:
        return [{"input_ids": e.input_ids, "labels": e.labels, "token_type_ids": [1] * len(e.input_ids)}
                for e in examples]  # fmt: skip
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].input_ids), i))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row), sorted: the first entry with room >= n is the best fit
    for i in order:
        need = len(examples[i].input_ids)
        j = bisect.bisect_left(free, (need, -1))
        if j == len(free):
            rows.append([i])
            room, row = max_length - need, len(rows) - 1
        else:
            room, row = free.pop(j)
            rows[row].append(i)
            room -= need
        bisect.insort(free, (room, row))
    features = []
    for members in rows:
        ids, labels, segments = [], [], []
        for k, i in enumerate(members, start=1):
            ids += examples[i].input_ids
            labels += examples[i].labels
            segments += [k] * len(examples[i].input_ids)
        features.append({"input_ids": ids, "labels": labels, "token_type_ids": segments})
    return features


def segment_keep(segment_ids_BT: Tensor) -> Tensor:
    """Bool attention pattern ``(B, 1, T, T)`` of packed rows: a token attends to keys of its own segment (0 =
    padding attends nothing); the model ANDs its causal mask on top."""
    same_BTT = segment_ids_BT[:, :, None] == segment_ids_BT[:, None, :]
    return (same_BTT & (segment_ids_BT[:, None, :] > 0))[:, None]


def segment_positions(segment_ids_BT: Tensor) -> Tensor:
    """Position of each token within its segment ``(B, T)``: restarts at 0 where the segment id changes."""
    index_BT = torch.arange(segment_ids_BT.shape[1], device=segment_ids_BT.device).expand_as(segment_ids_BT)
    starts_BT = torch.ones_like(segment_ids_BT, dtype=torch.bool)
    starts_BT[:, 1:] = segment_ids_BT[:, 1:] != segment_ids_BT[:, :-1]
    return index_BT - torch.where(starts_BT, index_BT, 0).cummax(dim=1).values


class SFTModel(LanguageModel):
    """A causal ``LanguageModel``'s backbone and head, trained on (packed) SFT rows. Same submodule names, so the
    same state dict: checkpoints load as a plain ``clm`` model. ``forward`` takes the loop's batch keys; with
    ``packed``, ``token_type_ids`` are segment ids that become the block-diagonal pattern and restarting positions.
    """

    def __init__(self, language_model: nn.Module, *, packed: bool):
        if getattr(language_model, "objective", None) != "clm":
            raise ValueError(f"SFT needs a causal LM, got objective {getattr(language_model, 'objective', None)!r}")
        super().__init__(language_model.backbone, language_model.head, objective="clm")
        self.packed = packed

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        *,
        logits_at_labels_only: bool = False,  # evaluate_lm's MLM switch; a CLM computes every position
    ) -> LMOutput:
        if self.packed and token_type_ids is not None:
            hidden_BTD = self.backbone(input_ids, attention_mask=segment_keep(token_type_ids),
                                       position_ids=segment_positions(token_type_ids))  # fmt: skip
        else:
            hidden_BTD = self.backbone(input_ids, attention_mask=attention_mask)
        logits_BTV = self.head(hidden_BTD)
        aux_loss, metrics = pop_router_losses(self.backbone)
        loss = clm_loss(logits_BTV, labels) if labels is not None else None
        return LMOutput(loss=loss, logits=logits_BTV, hidden_states=hidden_BTD, aux_loss=aux_loss, metrics=metrics)


# ----------------------------------------------------------------------------- the job


def _batches(features: list[dict[str, Any]], *, batch_size: int, pad_id: int) -> Iterator[dict[str, Tensor]]:
    for i in range(0, len(features), batch_size):
        yield collate(features[i : i + batch_size], pad_id=pad_id)


def finetune_sft(args: FinetuneArgs, info: DistInfo) -> dict[str, Any]:
    """Train, keep the checkpoint with the best dev loss (the last without dev), write report.json; returns it."""
    from lmforge.data.tokenizer import META_FILE
    from lmforge.eval.lm import evaluate_lm
    from lmforge.models.registry import config_to_dict
    from lmforge.tasks.finetune import load_source, train_keeping_best
    from lmforge.train.distributed import barrier, unwrap
    from lmforge.train.job import RUN_FILES, amp_dtype, open_run_dir, place_model, write_run_record
    from lmforge.train.metrics import plot_loss
    from lmforge.utils import seed_everything

    if args.data_dir is None:
        raise ValueError("pass --data_dir: the directory with train.jsonl (and dev.jsonl) conversations")
    seed_everything(args.seed)
    loaded = load_source(args, task="clm")
    tokenizer, config = loaded.tokenizer, loaded.config
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and args.max_seq_length > limit:
        raise ValueError(f"--max_seq_length {args.max_seq_length} exceeds the model's max_position_embeddings {limit}")
    source_tokenizer_dir = Path(args.tokenizer_dir) if args.tokenizer_dir is not None else loaded.tokenizer_dir
    source_template = None if source_tokenizer_dir is None else load_chat_template(source_tokenizer_dir, tokenizer)
    template = source_template or ChatTemplate.for_tokenizer(tokenizer)
    packed = loaded.arch in PACKING_ARCHS
    data_dir = Path(args.data_dir)
    splits = [s for s, on in (("train", args.do_train), ("dev", args.do_eval)) if on]
    files = {s: f for s in splits if (f := _split_file(data_dir, s)) is not None}
    if args.do_train and "train" not in files:
        raise ValueError(f"{data_dir} has no {' or '.join(SPLIT_FILES['train'])}")
    examples, counts, features = {}, {}, {}
    for split, path in files.items():
        examples[split], counts[split] = read_sft_split(path, tokenizer, template, max_seq_length=args.max_seq_length)
        if not examples[split]:
            c = counts[split]
            reasons = ", ".join(f"{n} {why} (first: {c.first[why]})" for why, n in c.dropped.items()) or "empty file"
            raise ValueError(f"{path}: no usable conversation in {c.lines} lines ({reasons})")
        features[split] = pack_examples(examples[split], max_length=args.max_seq_length, pack=packed)
    if args.max_train_samples is not None and "train" in features:
        features["train"] = features["train"][: args.max_train_samples]

    run_dir, resume = open_run_dir(args, info, run_files=(*RUN_FILES, "dev_metrics.json", "report.json", "tokenizer"))
    tokenizer_dir = run_dir / "tokenizer"  # the tokenizer + chat_template.json: every checkpoint and export copies it
    if info.is_main:
        shutil.rmtree(tokenizer_dir, ignore_errors=True)
        if source_tokenizer_dir is not None and (source_tokenizer_dir / META_FILE).is_file():
            shutil.copytree(source_tokenizer_dir, tokenizer_dir)
        else:  # an imported or Hugging Face tokenizer: its own files only
            tokenizer.save(tokenizer_dir)
        template.save(tokenizer_dir)
    barrier()
    model = place_model(SFTModel(loaded.build(), packed=packed), args, info, resume=resume)
    pad_id, logger = tokenizer.pad_token_id, None
    report: dict[str, Any] = {
        "task": "sft", "model": args.model, "arch": loaded.arch, "chat_template": template.to_dict(),
        "packing": packed, "files": {s: str(p) for s, p in files.items()},
        "counts": {s: dataclasses.asdict(c) for s, c in counts.items()},
        "rows": {s: _row_stats(f, args.max_seq_length) for s, f in features.items()},
    }  # fmt: skip
    write_run_record(run_dir, {"task": "sft", **dataclasses.asdict(args), "model_arch": loaded.arch}, info)

    def evaluate_dev(job: TrainingJob) -> dict[str, Any]:
        batches = _batches(features["dev"], batch_size=args.per_device_eval_batch_size, pad_id=pad_id)
        return evaluate_lm(job.model, batches, objective="clm", device=info.device, autocast=job.autocast)

    if args.do_train:
        kept, logger = train_keeping_best(
            args, info, model, features["train"], pad_id=pad_id, resume=resume, run_dir=run_dir,
            objective="finetune sft",
            model_info={"model": loaded.arch, "task": "clm", "config": config_to_dict(config), "finetuned": "sft"},
            tokenizer_dir=tokenizer_dir, evaluate=evaluate_dev if "dev" in features else None,
            metric_name=(args.metric_for_best_model or "loss").removeprefix("eval_"),
        )  # fmt: skip
        report |= kept
    if not info.is_main:
        return report
    if "dev" in features:
        batches = _batches(features["dev"], batch_size=args.per_device_eval_batch_size, pad_id=pad_id)
        dtype = amp_dtype(args)
        autocast = torch.autocast(info.device.type, dtype=dtype, enabled=dtype is not None)
        metrics = evaluate_lm(unwrap(model), batches, objective="clm", device=info.device, autocast=lambda: autocast)
        (run_dir / "dev_metrics.json").write_text(json.dumps(metrics, indent=2))
        report["dev"] = metrics
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    if logger is not None:
        logger.close()
    plot_loss(run_dir)
    _print_summary(report, file=sys.stdout)
    return report


def _row_stats(features: list[dict[str, Any]], max_length: int) -> dict[str, Any]:
    tokens = sum(len(f["input_ids"]) for f in features)
    examples = sum(max(f["token_type_ids"]) for f in features)
    return {"rows": len(features), "examples": examples, "tokens": tokens,
            "fill": tokens / max(1, len(features) * max_length)}  # fmt: skip


def _print_summary(report: dict[str, Any], *, file: Any) -> None:
    dev = report.get("dev")
    line = "-" if dev is None else f"loss {dev['eval_loss']:.4f}, response-token accuracy {dev['eval_accuracy']:.4f}"
    print(f"finetune sft: dev {line}", file=file)
    for split, counts in report["counts"].items():
        rows = report["rows"][split]
        dropped = ", ".join(f"{n} {why} (first: {counts['first'][why]})" for why, n in counts["dropped"].items())
        packing = f"packed into {rows['rows']} rows ({100 * rows['fill']:.0f}% full)" if report["packing"] else (
            f"one per row (no packing for {report['arch']})")  # fmt: skip
        truncated = f", {counts['truncated']} truncated" if counts["truncated"] else ""
        print(f"  {split}: {counts['examples']} conversations from {counts['lines']} lines{truncated}, {packing}; "
              f"dropped {dropped or 'none'}", file=file)  # fmt: skip
    if "best_step" in report:
        print(f"  kept checkpoint-{report['best_step']}; chat with: lmforge generate RUN_DIR - --chat", file=file)
