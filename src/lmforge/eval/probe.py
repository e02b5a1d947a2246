"""``lmforge evaluate probe RUN``: did a masked LM learn anything? Top-1/top-5 accuracy on a bundled cloze set.

Held-out MLM accuracy says how often the model recovers masked tokens of its own corpus, which a model that
predicts "，" and "的" everywhere already does fairly well; the probe asks for answers a person can check. The set
(``lmforge/assets/cloze_zh.jsonl``, one JSON object per line: ``id``, ``text`` with one or more ``[MASK]``, one
answer *character* per mask, ``domain``) has three parts: general collocations and idioms (including the demo's
sentence), and frequent terms and lines of the two domains of the bundled corpus (LibreOffice help, classical
poetry and prose), so a model pretrained on that corpus can score above zero. Chance level is about k / vocab.

Scoring: every item is encoded as ``fill_mask.predict_masks`` encodes it (``[CLS] text [SEP]``, the mask placed by
id), all masks of an item are predicted jointly, items are padded into batches (padding must not change the
outputs: tested per architecture). Accuracy is per mask. An item whose answers are not single known tokens of the
tokenizer (a byte-level BPE splits a character into pieces; a char vocabulary may lack a rare one), or that is
longer than the model's absolute positions, is skipped and counted, never silently dropped. ``punctuation`` is
the share of top-1 predictions that are punctuation only: the symptom of an undertrained model.

This module's top level imports no torch (``lmforge evaluate --help`` stays fast).
"""

from __future__ import annotations

import json
import unicodedata
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lmforge.eval.fill_mask import MASK, encode_masked, position_limit

__all__ = ["ClozeItem", "ProbeArgs", "evaluate_probe", "is_punctuation", "load_probe", "probe_metrics", "score_probe"]

PROBE_FILE = "cloze_zh.jsonl"


@dataclass(frozen=True)
class ClozeItem:
    id: str
    text: str
    answers: tuple[str, ...]  # one character per [MASK], left to right
    domain: str = ""


def load_probe(path: str | Path | None = None) -> list[ClozeItem]:
    """The cloze items of ``path`` (default: the bundled ``cloze_zh.jsonl``); a malformed item is a ``ValueError``."""
    if path is None:
        text = resources.files("lmforge").joinpath("assets", PROBE_FILE).read_text(encoding="utf-8")
        where = PROBE_FILE
    else:
        if not Path(path).is_file():
            raise ValueError(f"probe file {str(path)!r} does not exist")
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    from lmforge.tasks.common import json_object

    items, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record = json_object(line, f"{where}:{number}")
        item_id, body, answers = record.get("id", f"line-{number}"), record.get("text"), record.get("answers")
        if not isinstance(body, str) or MASK not in body:
            raise ValueError(f"{where}:{number}: 'text' must be a string with at least one {MASK}")
        if not isinstance(answers, list) or len(answers) != body.count(MASK):
            raise ValueError(f"{where}:{number}: 'answers' must list one answer per {MASK} ({body.count(MASK)})")
        if not all(isinstance(a, str) and len(a) == 1 for a in answers):
            raise ValueError(f"{where}:{number}: every answer must be one character, got {answers}")
        if item_id in seen:
            raise ValueError(f"{where}:{number}: duplicate id {item_id!r}")
        seen.add(item_id)
        items.append(ClozeItem(str(item_id), body, tuple(answers), str(record.get("domain", ""))))
    if not items:
        raise ValueError(f"{where} holds no cloze items")
    return items


def is_punctuation(token: str) -> bool:
    """True for a token made of Unicode punctuation only (``，`` ``。`` ``！`` ``,``); ``##`` is stripped first."""
    token = token.removeprefix("##")
    return bool(token) and all(unicodedata.category(c).startswith("P") for c in token)


def _answer_id(tokenizer: Any, answer: str) -> int | None:
    ids = tokenizer.encode(answer)
    if len(ids) != 1 or ids[0] == getattr(tokenizer, "unk_token_id", None):
        return None
    return ids[0]


def score_probe(
    model: Any,
    tokenizer: Any,
    items: list[ClozeItem] | None = None,
    *,
    top_k: int = 5,
    batch_size: int = 64,
    autocast: Any = nullcontext,
) -> dict[str, Any]:
    """``probe_metrics`` of ``model`` on ``items`` (default: the bundled set), plus the skipped ids and per-item
    top-1 predictions. Runs in eval mode without gradients and draws no random numbers."""
    import torch

    from lmforge.data.lm_tokenizer import require_mask_token_id

    if top_k < 1 or batch_size < 1:
        raise ValueError(f"top_k and batch_size must be >= 1, got {top_k}, {batch_size}")
    items = load_probe() if items is None else items
    mask_id = require_mask_token_id(tokenizer)
    limit = position_limit(model.config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scored: list[tuple[ClozeItem, list[int], list[int]]] = []  # item, input ids, answer ids
    skipped: dict[str, str] = {}
    for item in items:
        answer_ids = [_answer_id(tokenizer, a) for a in item.answers]
        ids = encode_masked(tokenizer, item.text, mask_id=mask_id)
        if None in answer_ids:
            missing = "".join(a for a, i in zip(item.answers, answer_ids) if i is None)
            skipped[item.id] = f"answer {missing!r} is not one token of the vocabulary"
        elif limit is not None and len(ids) > limit:
            skipped[item.id] = f"{len(ids)} tokens, the model takes {limit}"
        else:
            scored.append((item, ids, answer_ids))

    device = next(model.parameters()).device
    hits = torch.zeros(2, dtype=torch.long)  # top-1, top-k
    masks = punctuation = 0
    predictions: dict[str, list[str]] = {}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(scored), batch_size):
            chunk = scored[start : start + batch_size]
            width = max(len(ids) for _, ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros_like(input_ids)
            for row, (_, ids, _) in enumerate(chunk):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
            input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
            with torch.no_grad(), autocast():
                logits_BTV = model(input_ids, attention_mask=attention_mask).logits
            rows, cols = (input_ids == mask_id).nonzero(as_tuple=True)  # row-major: each item's masks left to right
            top_NK = logits_BTV[rows, cols].float().topk(min(top_k, logits_BTV.shape[-1]), dim=-1).indices.cpu()
            answers_N = torch.tensor([a for _, _, answer_ids in chunk for a in answer_ids])
            assert len(answers_N) == len(top_NK), "a [MASK] id inside an item's text"
            found_NK = top_NK == answers_N[:, None]
            hits += torch.stack([found_NK[:, 0].sum(), found_NK.any(dim=-1).sum()])
            best = tokenizer.convert_ids_to_tokens(top_NK[:, 0].tolist())
            masks += len(best)
            punctuation += sum(is_punctuation(t) for t in best)
            offset = 0
            for item, _, answer_ids in chunk:
                predictions[item.id] = best[offset : offset + len(answer_ids)]
                offset += len(answer_ids)
    finally:
        model.train(was_training)
    metrics = probe_metrics(
        items=len(items), scored=len(scored), masks=masks, top1=int(hits[0]), topk=int(hits[1]),
        punctuation=punctuation, top_k=top_k,
    )  # fmt: skip
    return {**metrics, "skipped": skipped, "predictions": predictions}


def probe_metrics(
    *, items: int, scored: int, masks: int, top1: int, topk: int, punctuation: int, top_k: int = 5
) -> dict[str, Any]:
    """``probe_top1``, ``probe_top{k}``, ``probe_punctuation`` (shares of the scored masks; absent when nothing was
    scored) and the counts ``probe_items`` = ``probe_scored`` + ``probe_skipped``, ``probe_masks``."""
    out: dict[str, Any] = {"probe_items": items, "probe_scored": scored, "probe_skipped": items - scored,
                           "probe_masks": masks}  # fmt: skip
    if masks:
        out |= {"probe_top1": top1 / masks, f"probe_top{top_k}": topk / masks, "probe_punctuation": punctuation / masks}
    return out


@dataclass  # not kw_only: the model is positional (lmforge evaluate probe RUN)
class ProbeArgs:
    model: str
    """A masked LM: a run (its newest checkpoint), checkpoint-STEP, export, Hugging Face or JunnYu directory."""
    probe_file: str | None = None
    """A cloze jsonl file ({"id", "text" with [MASK]s, "answers": one character per mask}); default: the bundled
    Chinese set (lmforge/assets/cloze_zh.jsonl)."""
    top_k: int = 5
    """An answer within the k best predictions counts for top-k accuracy."""
    show: int = 10
    """Print the top-1 predictions of this many items (0: none)."""
    output_dir: str | None = None
    """Write probe_results.json here (default: the run directory when MODEL is a run or checkpoint, else nowhere)."""
    device: str | None = None
    """cpu or cuda (default: cuda when available)."""


def format_probe(result: dict[str, Any], *, top_k: int = 5) -> str:
    """One line: ``top-1 0.125, top-5 0.250 over 66 masks (64 items, 0 skipped); 12% of top-1 are punctuation``."""
    if not result["probe_masks"]:
        return f"probe: nothing scored ({result['probe_items']} items, all skipped)"
    return (
        f"top-1 {result['probe_top1']:.3f}, top-{top_k} {result[f'probe_top{top_k}']:.3f} over "
        f"{result['probe_masks']} masks ({result['probe_items']} items, {result['probe_skipped']} skipped); "
        f"{100 * result['probe_punctuation']:.0f}% of top-1 predictions are punctuation"
    )


def evaluate_probe(args: ProbeArgs) -> dict[str, Any]:
    """CLI entry point: load the model, score the probe, print (and write ``probe_results.json``); returns it."""
    import torch

    from lmforge.models.loading import load_model

    if args.show < 0:
        raise ValueError(f"--show must be >= 0, got {args.show}")
    items = load_probe(args.probe_file)  # a malformed file fails before the model loads
    loaded = load_model(args.model, task="mlm", with_tokenizer=True)  # any source with an MLM head; one line
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    result = score_probe(loaded.model.to(device), loaded.tokenizer, items, top_k=args.top_k)
    result = {"model": args.model, "probe_file": args.probe_file or PROBE_FILE, **result}
    for item in items[: args.show]:
        if item.id in result["predictions"]:
            got = "".join(t.removeprefix("##") for t in result["predictions"][item.id])
            mark = "ok" if tuple(result["predictions"][item.id]) == item.answers else "  "
            print(f"{mark} {item.id:16s} {item.text}  answer {''.join(item.answers)}  top-1 {got}")
    for item_id, reason in result["skipped"].items():
        print(f"skipped {item_id}: {reason}")
    print(format_probe(result, top_k=args.top_k))
    out = args.output_dir
    if out is None:
        path = Path(args.model)
        run_dir = path.parent if path.name.startswith("checkpoint-") else path
        out = str(run_dir) if (run_dir / "config.yaml").is_file() else None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        (Path(out) / "probe_results.json").write_text(text, encoding="utf-8")
    return result
