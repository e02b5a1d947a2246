"""CLUENER2020 named-entity recognition as BIO token tagging, with entity-level F1.

Files: ``{train,dev,test}.json`` (or ``.jsonl``) in ``--data_dir``, one sentence per line as CLUENER publishes it:
``{"text": "...", "label": {"name": {"叶老桂": [[9, 11]]}, ...}}`` with *inclusive* character ends; test lines have
an ``id`` and no ``label``. The 10 types are CLUENER's (address, book, company, game, government, movie, name,
organization, position, scene); tags are ``O`` plus ``B-``/``I-`` per type (CLUENER's BIOS baseline minus the S
tag: a one-character entity is a lone ``B``).

Tokens carry the tag of their characters: ``B-X`` when the token starts entity X, ``I-X`` inside it, ``O`` outside;
predicted tags become character spans through the token offsets, so the F1 (``eval/metrics.entity_f1``, exact type
+ start + end) is measured in CLUENER's character coordinates whatever the tokenizer. Sentences longer than
``--max_seq_length`` are cut, and the cut is counted (entities past it count as missed on dev).

Bad input (``ValueError`` naming file and line): a missing ``text``, an unknown type, a span outside the text or
whose characters differ from the entity string. Overlapping entities keep the first by start (counted).
Predictions: ``cluener_predict.json``, one ``{"id", "label": {type: {entity: [[start, end]]}}}`` per line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["CLUENER_TYPES", "build_ner_task", "clue_label", "decode_tags", "ner_input", "read_cluener",
           "tagged_entities"]  # fmt: skip

CLUENER_TYPES = ("address", "book", "company", "game", "government", "movie", "name", "organization", "position",
                 "scene")  # fmt: skip


def ner_input(ids: list[int], offsets: list, *, tokenizer: Any, max_seq_length: int) -> tuple[dict[str, Any], bool]:
    """``{"input_ids": [CLS] ids [SEP], "offsets"}`` of one encoded sentence cut to ``max_seq_length`` tokens, and
    whether it was cut."""
    keep = max(max_seq_length - 2, 0)  # room for [CLS] and [SEP]
    feature = {"input_ids": [tokenizer.cls_token_id, *ids[:keep], tokenizer.sep_token_id], "offsets": offsets[:keep]}
    return feature, len(ids) > keep


def decode_tags(logits_TC: Any, num_tokens: int, tags: list[str]) -> list[str]:
    """The argmax tag of each of the ``num_tokens`` text tokens of one feature's logits (after [CLS])."""
    return [tags[i] for i in logits_TC[1 : 1 + num_tokens].argmax(-1).tolist()]


def tagged_entities(token_tags: list[str], offsets: list) -> list[tuple[str, int, int]]:
    """BIO tags of the tokens -> ``(type, first character, last character inclusive)`` through the token offsets."""
    from lmforge.eval.metrics import bio_entities

    return [(k, offsets[s][0], offsets[e][1] - 1) for k, s, e in bio_entities(token_tags)]


def clue_label(text: str, spans: list[tuple[str, int, int]]) -> dict[str, dict[str, list[list[int]]]]:
    """CLUENER's ``label`` object ``{type: {entity: [[start, end_inclusive]]}}`` of entity spans in ``text``."""
    label: dict[str, dict[str, list[list[int]]]] = {}
    for kind, start, end in spans:
        label.setdefault(kind, {}).setdefault(text[start : end + 1], []).append([start, end])
    return label


def read_cluener(path: Path, *, labelled: bool) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """``[{"id", "text", "entities": [(type, start, end_inclusive)], "where"}]`` and counts of one file."""
    from lmforge.tasks.clue import read_jsonl

    rows, counts = [], {"lines": 0, "entities": 0, "overlapping_entities_dropped": 0}
    for index, (number, record) in enumerate(read_jsonl(path)):
        where = f"{path}:{number}"
        counts["lines"] += 1
        text = record.get("text")
        if not isinstance(text, str):
            raise ValueError(f"{where}: missing field 'text' (has {sorted(record)})")
        entities = []
        if labelled:
            label = record.get("label", {})
            if not isinstance(label, dict):
                raise ValueError(f"{where}: 'label' must be an object {{type: {{entity: [[start, end]]}}}}")
            for kind, mentions in label.items():
                if kind not in CLUENER_TYPES:
                    raise ValueError(f"{where}: unknown entity type {kind!r}; CLUENER has {list(CLUENER_TYPES)}")
                for entity, spans in mentions.items():
                    for start, end in spans:
                        if not 0 <= start <= end < len(text) or text[start : end + 1] != entity:
                            raise ValueError(f"{where}: {kind} {entity!r} is not at characters [{start}, {end}]")
                        entities.append((kind, start, end))
        entities.sort(key=lambda e: (e[1], e[2]))
        kept, last_end = [], -1
        for entity in entities:
            if entity[1] <= last_end:
                counts["overlapping_entities_dropped"] += 1
                continue
            kept.append(entity)
            last_end = entity[2]
        counts["entities"] += len(kept)
        rows.append({"id": record.get("id", index), "text": text, "entities": kept, "where": where})
    counts["examples"] = len(rows)
    return rows, counts


def build_ner_task(args: Any, *, tokenizer: Any, hidden_size: int, splits: tuple[str, ...]) -> Any:
    """Read, tag and wrap CLUENER for ``finetune.py``."""
    from lmforge.eval.metrics import entity_f1
    from lmforge.heads.token_classification import TokenClassificationHead
    from lmforge.tasks.clue import find_split
    from lmforge.tasks.common import TaskBundle, encode_texts, require_cls_sep

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"--data_dir {str(data_dir)!r} is not a directory")
    tags = ["O", *(f"{p}-{t}" for t in CLUENER_TYPES for p in ("B", "I"))]
    tag_index = {tag: i for i, tag in enumerate(tags)}
    features: dict[str, list[dict[str, Any]]] = {}
    sentences: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, dict[str, Any]] = {}
    for split in splits:
        path = find_split(data_dir, split)
        if path is None:
            if split == "train":
                raise ValueError(f"{data_dir} has no train.json or train.jsonl")
            continue
        rows, stats = read_cluener(path, labelled=split != "test")
        require_cls_sep(tokenizer, "token classification")
        encoded = encode_texts(tokenizer, [r["text"] for r in rows], with_offsets=True)
        stats["truncated"] = 0
        out = []
        for row, (ids, offsets) in zip(rows, encoded, strict=True):
            feature, cut = ner_input(ids, offsets, tokenizer=tokenizer, max_seq_length=args.max_seq_length)
            stats["truncated"] += cut
            char_tags = ["O"] * len(row["text"])
            for kind, start, end in row["entities"]:
                char_tags[start : end + 1] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start)
            if split != "test":
                token_tags = [_token_tag(char_tags, s, e) for s, e in feature["offsets"]]
                feature["labels"] = [-100, *(tag_index[t] for t in token_tags), -100]
            out.append(feature)
        features[split], sentences[split], counts[split] = out, rows, {**stats, "file": str(path)}

    def score(split: str, logits: list) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        predicted = []
        for feature, row in zip(features[split], logits, strict=True):
            token_tags = decode_tags(row, len(feature["offsets"]), tags)
            predicted.append(tagged_entities(token_tags, feature["offsets"]))
        predictions = [
            {"id": row["id"], "label": clue_label(row["text"], spans)}
            for row, spans in zip(sentences[split], predicted, strict=True)
        ]
        if split == "test":
            return {}, predictions
        scores = entity_f1([r["entities"] for r in sentences[split]], predicted)
        return {**scores, "num_examples": len(predicted)}, predictions

    def write_predictions(predictions: list[dict[str, Any]], out_dir: Path) -> Path:
        path = Path(out_dir) / f"{args.task}_predict.json"
        with open(path, "w", encoding="utf-8") as f:
            for record in predictions:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return path

    return TaskBundle(
        name=args.task,
        head=TokenClassificationHead(hidden_size, len(tags), dropout=args.classifier_dropout),
        head_config={"kind": "token_classification", "labels": tags, "dropout": args.classifier_dropout},
        features=features,
        score=score,
        write_predictions=write_predictions,
        best_metric="f1",
        report={"labels": tags, "counts": counts},
    )


def _token_tag(char_tags: list[str], start: int, end: int) -> str:
    """A token's tag: its first character's, except that a token starting inside an entity continues it."""
    if start >= len(char_tags) or end <= start:
        return "O"
    return char_tags[start]
