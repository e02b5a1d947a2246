"""Readers for the CLUE classification tasks and a generic ``classification`` task, from local JSON-lines files.

Files: ``DATA_DIR/{train,dev,test}.json`` (CLUE's names; JSON-lines despite the suffix) or ``.jsonl``; an optional
``labels.json`` (CLUE's TNEWS/IFLYTEK file: one ``{"label", "label_desc"}`` per line, or a JSON array of those
or of strings) gives the label order and descriptions. Formats, label sets and conventions are CLUE's
(CLUEbenchmark/CLUE ``baselines/models_pytorch/classifier_pytorch/processors/clue.py``):

| task | text_a | text_b | labels |
|---|---|---|---|
| tnews | sentence | | 15 ids "100".."116" without "105" and "111" |
| iflytek | sentence | | "0".."118" |
| afqmc | sentence1 | sentence2 | "0", "1" |
| ocnli, cmnli | sentence1 | sentence2 | entailment, neutral, contradiction; "-" (no majority) dropped |
| cluewsc2020 | text with ``_span1_`` and ``[span2]`` marked | | "true", "false" |
| csl | keywords joined by " " | abst | "0", "1" |
| classification | sentence, or sentence1 | sentence2 | labels.json, else the sorted labels of train |

Bad input is a ``ValueError`` naming the file and line: malformed JSON, a missing field, an unknown label, an empty
file, a WSC span that is not at its index, a dev/test label that train never had. The only examples dropped are
the NLI "-" labels (CLUE's convention), and they are counted (``SplitCounts``), never silent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from lmforge.tasks.common import TaskBundle

__all__ = [
    "CLUE_TASKS",
    "ClassificationData",
    "Example",
    "SplitCounts",
    "TaskSpec",
    "build_classification_task",
    "classification_input",
    "find_split",
    "read_classification",
    "read_jsonl",
    "read_labels_file",
]

SPLITS = ("train", "dev", "test")


@dataclass
class Example:
    text_a: str
    text_b: str | None
    label: str | None  # None in the test split
    id: Any  # the record's "id" (or "idx"), else its 0-based line index: the id of the prediction file
    where: str  # "file:line", for error messages


@dataclass
class SplitCounts:
    lines: int = 0
    examples: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    labels: dict[str, int] = field(default_factory=dict)  # label -> count


@dataclass
class TaskSpec:
    name: str
    convert: Callable[[dict, str], tuple[str, str | None]]  # record, where -> (text_a, text_b)
    labels: tuple[str, ...] | None  # fixed label set; None: labels.json or the train labels
    drop_labels: tuple[str, ...] = ()  # labels whose examples are dropped and counted (NLI "-")


@dataclass
class ClassificationData:
    task: str
    labels: list[str]
    label_descriptions: dict[str, str]
    splits: dict[str, list[Example]]  # "train"/"dev"/"test", the ones present
    counts: dict[str, SplitCounts]
    files: dict[str, str]


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """``(1-based line, record)`` of a JSON-lines file; blank lines are skipped. ``ValueError`` on bad JSON or an
    empty file."""
    from lmforge.tasks.common import json_object

    seen = False
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json_object(line, f"{path}:{number}")
            seen = True
            yield number, record
    if not seen:
        raise ValueError(f"{path}: the file is empty")


def _field(record: dict, name: str, where: str) -> Any:
    if name not in record or record[name] is None:
        raise ValueError(f"{where}: missing field {name!r} (has {sorted(record)})")
    return record[name]


def _text(record: dict, name: str, where: str) -> str:
    value = _field(record, name, where)
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def _single(record: dict, where: str) -> tuple[str, None]:
    return _text(record, "sentence", where), None


def _pair(record: dict, where: str) -> tuple[str, str]:
    return _text(record, "sentence1", where), _text(record, "sentence2", where)


def _generic(record: dict, where: str) -> tuple[str, str | None]:
    if "sentence" in record:
        return _single(record, where)
    if "sentence1" in record:
        return _pair(record, where)
    raise ValueError(f"{where}: needs 'sentence' or 'sentence1'/'sentence2' (has {sorted(record)})")


def _csl(record: dict, where: str) -> tuple[str, str]:
    keywords = _field(record, "keyword", where)
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise ValueError(f"{where}: 'keyword' must be a list of strings")
    return " ".join(keywords), _text(record, "abst", where)


def _wsc(record: dict, where: str) -> tuple[str, None]:
    """span1 (the candidate) as ``_..._``, span2 (the pronoun) as ``[...]``, as the CLUE baseline does."""
    text = _text(record, "text", where)
    target = _field(record, "target", where)
    spans = []
    for name, marks in (("span1", "__"), ("span2", "[]")):
        span = _field(target, f"{name}_text", where)
        index = _field(target, f"{name}_index", where)
        if not isinstance(index, int) or text[index : index + len(span)] != span:
            raise ValueError(f"{where}: target {name}_text {span!r} is not at {name}_index {index} of the text")
        spans.append((index, index + len(span), marks))
    for start, end, (left, right) in sorted(spans, reverse=True):  # right to left: indices stay valid
        text = text[:start] + left + text[start:end] + right + text[end:]
    return text, None


TNEWS_LABELS = tuple(str(i) for i in range(100, 117) if i not in (105, 111))
NLI_LABELS = ("entailment", "neutral", "contradiction")
CLUE_TASKS: dict[str, TaskSpec] = {
    "tnews": TaskSpec("tnews", _single, TNEWS_LABELS),
    "iflytek": TaskSpec("iflytek", _single, tuple(str(i) for i in range(119))),
    "afqmc": TaskSpec("afqmc", _pair, ("0", "1")),
    "ocnli": TaskSpec("ocnli", _pair, NLI_LABELS, drop_labels=("-",)),
    "cmnli": TaskSpec("cmnli", _pair, NLI_LABELS, drop_labels=("-",)),
    "cluewsc2020": TaskSpec("cluewsc2020", _wsc, ("true", "false")),
    "csl": TaskSpec("csl", _csl, ("0", "1")),
    "classification": TaskSpec("classification", _generic, None),
}


def find_split(data_dir: Path, split: str) -> Path | None:
    for name in (f"{split}.json", f"{split}.jsonl"):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def read_labels_file(path: Path) -> tuple[list[str], dict[str, str]]:
    """Label order and descriptions from ``labels.json``: JSON lines or an array of ``{"label", "label_desc"}``
    objects, or an array of strings."""
    text = path.read_text(encoding="utf-8-sig").strip()
    if not text:
        raise ValueError(f"{path}: the file is empty")
    try:
        items = json.loads(text)
        if isinstance(items, dict):
            items = [items]
    except json.JSONDecodeError:
        items = [record for _, record in read_jsonl(path)]
    labels, descriptions = [], {}
    for i, item in enumerate(items, 1):
        if isinstance(item, str):
            labels.append(item)
        elif isinstance(item, dict) and "label" in item:
            labels.append(str(item["label"]))
            if "label_desc" in item:
                descriptions[str(item["label"])] = str(item["label_desc"])
        else:
            raise ValueError(f"{path}: entry {i} must be a string or an object with 'label', got {item!r}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: duplicate labels {sorted(k for k, n in Counter(labels).items() if n > 1)}")
    return labels, descriptions


def _label_of(record: dict, where: str) -> str:
    value = _field(record, "label", where)
    if isinstance(value, bool):  # WSC files sometimes carry JSON booleans
        return "true" if value else "false"
    if not isinstance(value, str | int):
        raise ValueError(f"{where}: 'label' must be a string or an integer, got {value!r}")
    return str(value)


def _read_split(path: Path, spec: TaskSpec, *, labelled: bool) -> tuple[list[Example], SplitCounts]:
    examples, counts = [], SplitCounts()
    for index, (number, record) in enumerate(read_jsonl(path)):
        counts.lines += 1
        where = f"{path}:{number}"
        text_a, text_b = spec.convert(record, where)
        label = None
        if labelled:
            label = _label_of(record, where)
            if label in spec.drop_labels:
                reason = f"label {label!r}"
                counts.dropped[reason] = counts.dropped.get(reason, 0) + 1
                continue
            counts.labels[label] = counts.labels.get(label, 0) + 1
        example_id = record.get("id", record.get("idx", index))
        examples.append(Example(text_a, text_b, label, example_id, where))
        counts.examples += 1
    return examples, counts


def read_classification(
    task: str, data_dir: str | Path, *, splits: tuple[str, ...] = SPLITS, labels: list[str] | None = None
) -> ClassificationData:
    """Read the splits of ``task`` that exist in ``data_dir`` (train is required when asked for) and check every
    label against the task's label set (fixed, ``labels.json`` or train's; ``labels``: a trained head's)."""
    if task not in CLUE_TASKS:
        raise ValueError(f"unknown classification task {task!r}; choose from {sorted(CLUE_TASKS)}")
    spec, data_dir = CLUE_TASKS[task], Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"--data_dir {str(data_dir)!r} is not a directory")
    files = {split: find_split(data_dir, split) for split in splits}
    if "train" in splits and files["train"] is None:
        raise ValueError(f"{data_dir} has no train.json or train.jsonl")
    data, counts = {}, {}
    for split, path in files.items():
        if path is not None:
            data[split], counts[split] = _read_split(path, spec, labelled=split != "test")

    descriptions: dict[str, str] = {}
    labels_file = data_dir / "labels.json"
    file_labels = None
    if labels_file.is_file():
        file_labels, descriptions = read_labels_file(labels_file)
    if labels is not None:
        labels, source = list(labels), "the labels the model was trained with"
        if file_labels is not None and file_labels != labels:
            raise ValueError(f"{labels_file}: labels {file_labels} differ from {source}, {labels}")
    elif spec.labels is not None:
        labels = list(spec.labels)
        if file_labels is not None and set(file_labels) - set(labels):
            raise ValueError(f"{labels_file}: labels {sorted(set(file_labels) - set(labels))} are not {task} labels")
        source = f"the {task} label set"
    elif file_labels is not None:
        labels, source = file_labels, str(labels_file)
    elif "train" in data:
        labels, source = sorted(counts["train"].labels), f"the labels of {files['train']}"
    else:
        raise ValueError(f"{data_dir}: no train split and no labels.json: the label set is unknown")
    known = set(labels)
    for examples in data.values():
        for example in examples:
            if example.label is not None and example.label not in known:
                raise ValueError(
                    f"{example.where}: label {example.label!r} is not in {source} ({len(labels)} labels: "
                    f"{labels[:20]}{' ...' if len(labels) > 20 else ''})"
                )
    if len(labels) < 2:
        raise ValueError(f"{task} needs at least 2 labels, {source} has {labels}")
    return ClassificationData(
        task, labels, descriptions, data, counts, {k: str(v) for k, v in files.items() if v is not None}
    )


# --------------------------------------------------------------------------------------------------------------
# the fine-tuning bundle


def classification_input(
    a: list[int], b: list[int] | None, *, tokenizer: Any, max_seq_length: int
) -> tuple[dict[str, list], bool]:
    """The feature of one example (``[CLS] a [SEP] (b [SEP])``, longest-first truncation) and whether it was cut."""
    from lmforge.tasks.common import encode_pair

    row = encode_pair(a, b, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, max_length=max_seq_length)
    return row, len(a) + len(b or []) + (3 if b is not None else 2) > max_seq_length


def build_classification_task(
    task: str,
    data_dir: str | Path,
    *,
    tokenizer: Any,
    hidden_size: int,
    pooling: str,
    dropout: float,
    max_seq_length: int,
    splits: tuple[str, ...] = SPLITS,
    labels: list[str] | None = None,
    majority_label: str | None = None,
) -> TaskBundle:
    """Read, encode (``[CLS] a [SEP] (b [SEP])``, longest-first truncation) and wrap ``task`` for the engine.
    ``majority_label``: the baseline's label, from the training run's counts (``report.json``) when evaluating
    without the train split; by default the most frequent training label of ``data_dir``."""
    from lmforge.eval.metrics import classification_report, plot_confusion_matrix
    from lmforge.heads.classification import SequenceClassificationHead
    from lmforge.tasks.common import TaskBundle, encode_texts

    data = read_classification(task, data_dir, splits=splits, labels=labels)
    index = {label: i for i, label in enumerate(data.labels)}
    features: dict[str, list[dict[str, Any]]] = {}
    truncated: dict[str, int] = {}
    unknown: dict[str, float] = {}  # share of [UNK] tokens: a tokenizer that does not fit the data shows here
    for split, examples in data.splits.items():
        a_ids = [ids for ids, _ in encode_texts(tokenizer, [e.text_a for e in examples])]
        b_ids = [ids for ids, _ in encode_texts(tokenizer, [e.text_b or "" for e in examples])]
        tokens = [t for ids in (*a_ids, *b_ids) for t in ids]
        unknown[split] = sum(t == tokenizer.unk_token_id for t in tokens) / max(len(tokens), 1)
        rows, cut = [], 0
        for example, a, b in zip(examples, a_ids, b_ids, strict=True):
            row, was_cut = classification_input(
                a, b if example.text_b is not None else None, tokenizer=tokenizer, max_seq_length=max_seq_length
            )
            cut += was_cut
            if example.label is not None:
                row["labels"] = index[example.label]
            rows.append(row)
        features[split], truncated[split] = rows, cut
    train_counts = data.counts["train"].labels if "train" in data.counts else {}
    majority = max(data.labels, key=lambda label: (train_counts.get(label, 0), -index[label]))
    if majority_label is not None:
        if majority_label not in index:
            raise ValueError(f"majority label {majority_label!r} is not one of {data.labels}")
        majority = majority_label

    display_names = [
        f"{label} {data.label_descriptions[label]}" if label in data.label_descriptions else label
        for label in data.labels
    ]

    def score(split: str, logits: list[Tensor]) -> tuple[dict[str, Any], list[tuple[Any, str]]]:
        predicted = [int(row.argmax()) for row in logits]
        examples = data.splits[split]
        predictions = [(e.id, data.labels[p]) for e, p in zip(examples, predicted, strict=True)]
        if split == "test" or any(e.label is None for e in examples):
            return {}, predictions
        gold = [index[e.label] for e in examples]
        metrics = classification_report(gold, predicted, data.labels)
        for label, desc in data.label_descriptions.items():  # CLUE's ids (100, 101, ...) say nothing on their own
            if label in metrics["per_class"]:
                metrics["per_class"][label]["label_desc"] = desc
        metrics["label_names"] = display_names
        metrics["majority_baseline_accuracy"] = sum(g == index[majority] for g in gold) / max(len(gold), 1)
        return metrics, predictions

    def write_predictions(predictions: list[tuple[Any, str]], out_dir: Path) -> Path:
        path = Path(out_dir) / f"{task}_predict.json"
        with open(path, "w", encoding="utf-8") as f:
            for example_id, label in predictions:
                record = {"id": example_id, "label": label}
                if label in data.label_descriptions:
                    record["label_desc"] = data.label_descriptions[label]
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return path

    def write_dev_extras(metrics: dict[str, Any], out_dir: Path) -> None:
        plot_confusion_matrix(metrics["confusion_matrix"], display_names, Path(out_dir) / "confusion_matrix.png")

    head_config = {"kind": "sequence_classification", "labels": data.labels, "pooling": pooling, "dropout": dropout}
    counts = {
        split: {
            **vars(c),
            "truncated": truncated.get(split, 0),
            "unknown_token_share": unknown.get(split, 0.0),
            "file": data.files[split],
        }
        for split, c in data.counts.items()
    }
    return TaskBundle(
        name=task,
        head=SequenceClassificationHead(hidden_size, len(data.labels), pooling=pooling, dropout=dropout),
        head_config=head_config,
        features=features,
        score=score,
        write_predictions=write_predictions,
        best_metric="accuracy",
        report={"labels": data.labels, "majority_label": majority, "counts": counts},
        write_dev_extras=write_dev_extras,
    )
