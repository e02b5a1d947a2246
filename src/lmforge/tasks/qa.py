"""Extractive QA: CMRC2018 and SQuAD-style data -> windows with a doc stride -> span head -> n-best answers.

Files in ``--data_dir``: ``{train,dev,test,trial}.json`` or ``cmrc2018_{split}.json`` in the SQuAD JSON layout
(``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``,
CMRC2018 and SQuAD v1.1), or JSON lines with one question per line (``id``, ``context``, ``question``, ``answers``
as ``{"text": [...], "answer_start": [...]}`` like the HF ``squad`` dataset, or as a list of objects).

Windows (google-research/bert ``run_squad.py``): ``[CLS] question [SEP] context piece [SEP]``, the question cut to
``--max_query_length`` tokens, context pieces starting every ``--doc_stride`` tokens (BERT's meaning: the step
between window starts, not HF's overlap), each token's "max context" window marked for decoding. A training window
that does not contain the whole answer targets [CLS] (index 0). Decoding and the span head: ``heads/qa.py``.

Metrics: ``cmrc2018`` uses the official CMRC2018 EM/F1 (``eval/metrics.py``; EM is the leaderboard metric and picks
the best checkpoint), ``squad`` the SQuAD v1.1 script's (F1 picks). Predictions: ``{task}_predict.json`` =
``{question id: answer text}`` (the CMRC2018/CLUE submission format).

Bad input: a missing field or a malformed file is a ``ValueError`` naming the file and the line (JSON lines) or the
question id. An answer whose ``answer_start`` does not point at its text is searched for in the context (counted
as ``answer_start_repaired``); one that does not occur at all is not trained on (counted as
``answer_not_in_context``) but still scored against on dev.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["QAExample", "build_qa_task", "make_windows", "read_qa"]


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]  # (text, answer_start); empty in test files
    where: str


def _qa_file(data_dir: Path, split: str) -> Path | None:
    """``find_split``'s ``{split}.json(l)``, else CMRC2018's ``cmrc2018_{split}.json``."""
    from lmforge.tasks.clue import find_split

    cmrc = data_dir / f"cmrc2018_{split}.json"
    return find_split(data_dir, split) or (cmrc if cmrc.is_file() else None)


def _answers(raw: Any, where: str) -> list[tuple[str, int]]:
    if raw is None:
        return []
    if isinstance(raw, dict):  # HF datasets layout: {"text": [...], "answer_start": [...]}
        texts, starts = raw.get("text", []), raw.get("answer_start", [])
        if len(texts) != len(starts):
            raise ValueError(f"{where}: answers has {len(texts)} texts but {len(starts)} answer_start values")
        return [(str(t), int(s)) for t, s in zip(texts, starts, strict=True)]
    if not isinstance(raw, list):
        raise ValueError(f"{where}: 'answers' must be a list or a {{text, answer_start}} object")
    out = []
    for answer in raw:
        if not isinstance(answer, dict) or "text" not in answer:
            raise ValueError(f"{where}: every answer needs a 'text' field, got {answer!r}")
        out.append((str(answer["text"]), int(answer.get("answer_start", -1))))
    return out


def _squad_records(path: Path, document: dict) -> Iterator[QAExample]:
    if not isinstance(document.get("data"), list):
        raise ValueError(f"{path}: expected SQuAD/CMRC2018 JSON with a top-level 'data' list")
    for article in document["data"]:
        for paragraph in article.get("paragraphs", []):
            if "context" not in paragraph or "qas" not in paragraph:
                name = article.get("title", article.get("id"))
                raise ValueError(f"{path}: a paragraph of {name!r} lacks 'context' or 'qas'")
            for qa in paragraph["qas"]:
                where = f"{path}: question {qa.get('id', '?')!r}"
                for key in ("id", "question"):
                    if key not in qa:
                        raise ValueError(f"{where}: missing field {key!r}")
                answers = _answers(qa.get("answers"), where)
                yield QAExample(str(qa["id"]), qa["question"], paragraph["context"], answers, where)


def read_qa(path: Path) -> list[QAExample]:
    """Every question of a SQuAD/CMRC2018 JSON file or of a JSON-lines file (one question per line)."""
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ValueError(f"{path}: the file is empty")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if isinstance(document, dict) and "data" in document:
        examples = list(_squad_records(path, document))
    else:
        from lmforge.tasks.clue import read_jsonl

        examples = []
        for number, record in read_jsonl(path):
            where = f"{path}:{number}"
            for key in ("id", "context", "question"):
                if key not in record:
                    raise ValueError(f"{where}: missing field {key!r} (has {sorted(record)})")
            answers = _answers(record.get("answers"), where)
            examples.append(QAExample(str(record["id"]), record["question"], record["context"], answers, where))
    if not examples:
        raise ValueError(f"{path}: no questions")
    return examples


def _max_context(window_starts: list[int], window_length: int, position: int, current: int) -> bool:
    """BERT's ``_check_is_max_context``: is ``current`` the window where ``position`` has the most context?"""
    best, best_score = None, None
    for index, start in enumerate(window_starts):
        end = start + window_length - 1
        if not start <= position <= end:
            continue
        score = min(position - start, end - position) + 0.01 * window_length
        if best_score is None or score > best_score:
            best, best_score = index, score
    return best == current


def make_windows(
    question_ids: list[int],
    context_ids: list[int],
    context_offsets: list[tuple[int, int]],
    *,
    cls_id: int,
    sep_id: int,
    max_seq_length: int,
    doc_stride: int,
    answer: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """The windows of one question: features with ``input_ids``, ``token_type_ids``, ``offsets`` (context tokens
    only), ``max_context`` and, when ``answer`` (characters [start, end)) is given, ``start/end_positions``."""
    room = max_seq_length - len(question_ids) - 3
    if room < 1:
        raise ValueError(f"--max_seq_length {max_seq_length} leaves no room for the context after the question")
    starts = [0]
    while starts[-1] + room < len(context_ids):
        starts.append(starts[-1] + min(doc_stride, room))
    lengths = [min(room, len(context_ids) - s) for s in starts]
    first = last = None
    if answer is not None:  # the context tokens the answer's first and last characters fall in
        first = next((i for i, (_, e) in enumerate(context_offsets) if e > answer[0]), None)
        last = next((i for i in range(len(context_offsets) - 1, -1, -1) if context_offsets[i][0] < answer[1]), None)
    windows = []
    prefix = [cls_id, *question_ids, sep_id]
    for w, (start, length) in enumerate(zip(starts, lengths, strict=True)):
        piece = context_ids[start : start + length]
        feature: dict[str, Any] = {
            "input_ids": [*prefix, *piece, sep_id],
            "token_type_ids": [0] * len(prefix) + [1] * (length + 1),
            "offsets": [None] * len(prefix) + list(context_offsets[start : start + length]) + [None],
            "max_context": [False] * len(prefix)
            + [_max_context(starts, room, start + i, w) for i in range(length)]
            + [False],
        }
        if answer is not None:
            # first > last: the answer covers only characters no token covers (NUL, removed marks): no target
            inside = first is not None and last is not None and start <= first <= last < start + length
            feature["start_positions"] = first - start + len(prefix) if inside else 0
            feature["end_positions"] = last - start + len(prefix) if inside else 0
        windows.append(feature)
    return windows


def build_qa_task(args: Any, *, tokenizer: Any, hidden_size: int, splits: tuple[str, ...]) -> Any:
    """Read, window and wrap a QA task for ``finetune.py`` (``args`` is its ``FinetuneArgs``)."""
    from lmforge.eval.metrics import cmrc2018_scores, squad_scores
    from lmforge.heads.qa import SpanHead, SpanWindow, decode_spans, split_span_logits
    from lmforge.tasks.common import TaskBundle, encode_texts, require_cls_sep

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"--data_dir {str(data_dir)!r} is not a directory")
    features: dict[str, list[dict[str, Any]]] = {}
    examples: dict[str, list[QAExample]] = {}
    counts: dict[str, dict[str, Any]] = {}
    for split in splits:
        path = _qa_file(data_dir, split) or (_qa_file(data_dir, "trial") if split == "test" else None)
        if path is None:
            if split == "train":
                raise ValueError(f"{data_dir} has no train.json, train.jsonl or cmrc2018_train.json")
            continue
        split_examples = read_qa(path)
        if split == "dev":
            unanswered = [e.where for e in split_examples if not e.answers]
            if unanswered:
                raise ValueError(f"{unanswered[0]}: a dev question without answers ({len(unanswered)} in all); "
                                 "unanswerable questions (SQuAD 2.0) are not supported")  # fmt: skip
        require_cls_sep(tokenizer, "extractive QA")
        questions = encode_texts(tokenizer, [e.question for e in split_examples], with_offsets=False)
        contexts = encode_texts(tokenizer, [e.context for e in split_examples], with_offsets=True)
        rows, stats = [], {"questions": len(split_examples), "answer_start_repaired": 0, "answer_not_in_context": 0}
        for i, example in enumerate(split_examples):
            answer = None
            if split == "train":
                answer = _locate(example, stats)
                if answer is None and example.answers:
                    continue  # counted in answer_not_in_context
            context_ids, offsets = contexts[i]
            windows = make_windows(
                questions[i][0][: args.max_query_length], context_ids, offsets, cls_id=tokenizer.cls_token_id,
                sep_id=tokenizer.sep_token_id, max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
                answer=answer,
            )  # fmt: skip
            for window in windows:
                window["example"] = i
            rows += windows if split != "train" else [_training_view(w) for w in windows]
        stats |= {"windows": len(rows), "file": str(path)}
        features[split], examples[split], counts[split] = rows, split_examples, stats

    def score(split: str, logits: list) -> tuple[dict[str, Any], dict[str, str]]:
        windows: dict[int, list] = {}
        for feature, row in zip(features[split], logits, strict=True):
            start, end = split_span_logits(row)
            windows.setdefault(feature["example"], []).append(
                SpanWindow(start, end, feature["offsets"], feature["max_context"])
            )
        predictions = {}
        for i, example in enumerate(examples[split]):
            answers = decode_spans(windows.get(i, []), example.context, n_best=args.n_best_size,
                                   max_answer_length=args.max_answer_length)  # fmt: skip
            predictions[example.id] = answers[0].text
        gold = {e.id: [text for text, _ in e.answers] for e in examples[split]}
        if split == "test" or not all(gold.values()):
            return {}, predictions
        scorer = cmrc2018_scores if args.task == "cmrc2018" else squad_scores
        return scorer(gold, predictions), predictions

    def write_predictions(predictions: dict[str, str], out_dir: Path) -> Path:
        path = Path(out_dir) / f"{args.task}_predict.json"
        path.write_text(json.dumps(predictions, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    return TaskBundle(
        name=args.task,
        head=SpanHead(hidden_size),
        head_config={"kind": "span"},
        features=features,
        score=score,
        write_predictions=write_predictions,
        best_metric="em" if args.task == "cmrc2018" else "f1",
        report={"counts": {s: {**c, "examples": c["questions"], "lines": c["questions"]} for s, c in counts.items()}},
    )


def _locate(example: QAExample, stats: dict[str, int]) -> tuple[int, int] | None:
    """Character span [start, end) of the first answer in the context; repaired or counted when it is not there."""
    if not example.answers:
        return None
    text, start = example.answers[0]
    if example.context[start : start + len(text)] != text:
        found = example.context.find(text)
        if found < 0 or not text:
            stats["answer_not_in_context"] += 1
            return None
        stats["answer_start_repaired"] += 1
        start = found
    return start, start + len(text)


def _training_view(window: dict[str, Any]) -> dict[str, Any]:
    return {k: window[k] for k in ("input_ids", "token_type_ids", "start_positions", "end_positions", "example")}
