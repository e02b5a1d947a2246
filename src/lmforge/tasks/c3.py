"""C3 (CLUE's free-form multiple-choice reading comprehension): a document, a question, 2 to 4 choices.

Files (CLUE's ``c3_public`` and nlpdata/c3): ``DATA_DIR/{split}.json``, else ``d-{split}.json`` and
``m-{split}.json`` (dialogue and mixed genre) read in that order. Each is one JSON array of documents
``[[context line, ...], [{"question", "choice": [...], "answer", "id"?}, ...], document id]``; ``answer`` is absent
in test. Each question becomes one feature with a sequence per choice, ``[CLS] context [SEP] question choice [SEP]``
(longest-first truncation, as the classifier), scored by ``heads/multiple_choice.py``. Predictions:
``c3_predict.json``, one ``{"id", "label": choice index}`` per line (``evaluate clue --package`` names it
``c311_predict.json``); a question without ``"id"`` has its 0-based position in the file.

Bad input is a ``ValueError`` naming the file and the document/question: not JSON, a document that is not
``[context, questions, id]``, a missing field, fewer than 2 or more than 4 choices, an answer that is not one of the
choices. Nothing is dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from lmforge.tasks.common import TaskBundle

__all__ = ["C3Question", "build_c3_task", "read_c3"]

MIN_CHOICES, MAX_CHOICES = 2, 4


@dataclass
class C3Question:
    context: str
    question: str
    choices: list[str]
    label: int | None  # index of the answer in choices; None in test
    id: Any
    where: str  # "file: document d question q", for error messages


def _split_files(data_dir: Path, split: str) -> list[Path]:
    if (data_dir / f"{split}.json").is_file():
        return [data_dir / f"{split}.json"]
    return [p for p in (data_dir / f"d-{split}.json", data_dir / f"m-{split}.json") if p.is_file()]


def _read_file(path: Path, *, labelled: bool, first_index: int) -> tuple[list[C3Question], int]:
    try:
        documents = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(documents, list) or not documents:
        raise ValueError(f"{path}: expected a non-empty JSON array of documents")
    out: list[C3Question] = []
    for d, document in enumerate(documents):
        if not (isinstance(document, list) and len(document) >= 2 and isinstance(document[0], list)
                and isinstance(document[1], list)):  # fmt: skip
            raise ValueError(f"{path}: document {d} must be [[context lines], [questions], id], got {document!r:.80}")
        context = "".join(str(line) for line in document[0])
        for q, item in enumerate(document[1]):
            where = f"{path}: document {d} question {q}"
            if not isinstance(item, dict):
                raise ValueError(f"{where}: expected an object, got {item!r:.80}")
            for name in ("question", "choice", *(("answer",) if labelled else ())):
                if name not in item:
                    raise ValueError(f"{where}: missing field {name!r} (has {sorted(item)})")
            choices = item["choice"]
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise ValueError(f"{where}: 'choice' must be a list of strings")
            if not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
                raise ValueError(f"{where}: {len(choices)} choices; C3 has {MIN_CHOICES} to {MAX_CHOICES}")
            label = None
            if labelled:
                if item["answer"] not in choices:
                    raise ValueError(f"{where}: answer {item['answer']!r} is not one of the choices {choices}")
                label = choices.index(item["answer"])
            example_id = item.get("id", first_index + len(out))
            out.append(C3Question(context, str(item["question"]), choices, label, example_id, where))
    return out, len(documents)


def read_c3(data_dir: str | Path, *, splits: tuple[str, ...]) -> tuple[dict[str, list[C3Question]], dict, dict]:
    """The questions of each split present (train required when asked for), the files read, the documents read."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"--data_dir {str(data_dir)!r} is not a directory")
    data, files, documents = {}, {}, {}
    for split in splits:
        paths = _split_files(data_dir, split)
        if not paths:
            if split == "train":
                raise ValueError(f"{data_dir} has no train.json, d-train.json or m-train.json")
            continue
        questions: list[C3Question] = []
        documents[split] = 0
        for path in paths:
            read, n = _read_file(path, labelled=split != "test", first_index=len(questions))
            questions += read
            documents[split] += n
        data[split], files[split] = questions, [str(p) for p in paths]
    return data, files, documents


def build_c3_task(
    data_dir: str | Path,
    *,
    tokenizer: Any,
    hidden_size: int,
    pooling: str,
    dropout: float,
    max_seq_length: int,
    splits: tuple[str, ...],
) -> TaskBundle:
    """Read, encode (one ``[CLS] context [SEP] question choice [SEP]`` per choice) and wrap C3 for the engine."""
    from lmforge.tasks.common import TaskBundle, choice_row, encode_texts, require_cls_sep
    from lmforge.tasks.registry import build_head

    require_cls_sep(tokenizer, "c3")
    data, files, documents = read_c3(data_dir, splits=splits)
    features: dict[str, list[dict[str, Any]]] = {}
    truncated: dict[str, int] = {}
    for split, questions in data.items():
        contexts = [ids for ids, _ in encode_texts(tokenizer, [q.context for q in questions])]
        endings = encode_texts(tokenizer, [q.question + c for q in questions for c in q.choices])
        rows, cut, k = [], 0, 0
        for question, context in zip(questions, contexts, strict=True):
            pairs = [(context, endings[k + i][0]) for i in range(len(question.choices))]
            k += len(question.choices)
            cut += sum(len(a) + len(b) + 3 > max_seq_length for a, b in pairs)
            rows.append(choice_row(pairs, tokenizer=tokenizer, max_length=max_seq_length, label=question.label))
        features[split], truncated[split] = rows, cut

    def score(split: str, logits: list[Tensor]) -> tuple[dict[str, Any], list[tuple[Any, int]]]:
        questions = data[split]
        predicted = [int(row[: len(q.choices)].argmax()) for q, row in zip(questions, logits, strict=True)]
        predictions = [(q.id, p) for q, p in zip(questions, predicted, strict=True)]
        if split == "test":
            return {}, predictions
        correct = sum(p == q.label for q, p in zip(questions, predicted, strict=True))
        first = sum(q.label == 0 for q in questions)  # the "always the first choice" baseline
        n = max(len(questions), 1)
        return {"accuracy": correct / n, "first_choice_baseline_accuracy": first / n, "total": len(questions)}, (
            predictions
        )

    def write_predictions(predictions: list[tuple[Any, int]], out_dir: Path) -> Path:
        path = Path(out_dir) / "c3_predict.json"
        with open(path, "w", encoding="utf-8") as f:
            for example_id, label in predictions:
                f.write(json.dumps({"id": example_id, "label": label}, ensure_ascii=False) + "\n")
        return path

    counts = {
        split: {
            "lines": documents[split],  # documents, for the run summary's "N examples from M lines"
            "examples": len(questions),
            "dropped": {},
            "choices": {
                str(n): sum(len(q.choices) == n for q in questions) for n in range(MIN_CHOICES, MAX_CHOICES + 1)
            },
            "truncated_choices": truncated[split],
            "files": files[split],
        }
        for split, questions in data.items()
    }
    head_config = {"kind": "multiple_choice", "pooling": pooling, "dropout": dropout}  # rebuilt by build_head
    return TaskBundle(
        name="c3",
        head=build_head(head_config, hidden_size),
        head_config=head_config,
        features=features,
        score=score,
        write_predictions=write_predictions,
        best_metric="accuracy",
        report={"counts": counts},
    )
