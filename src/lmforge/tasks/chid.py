"""CHID (CLUE's Chinese idiom cloze): passages with idioms blanked out as ``#idiomNNNNNN#``, 10 candidate idioms.

Files (CLUE's ``chid_public``): ``DATA_DIR/{split}.json``, JSON lines ``{"candidates": [10 idioms], "content":
[passage, ...]}`` (the candidates shared by the line's passages), and ``{split}_answer.json`` (train and dev), one
JSON object mapping each blank's tag to the index of its idiom among the candidates. Each blank is one example, a
multiple-choice feature scored by ``heads/multiple_choice.py`` (as C3, ``tasks/c3.py``): per candidate,
``[CLS] candidate [SEP] window [SEP]``, the window the passage around the blank with the blank as 4 ``[MASK]``s (the
tag itself for a tokenizer without a mask token), the passage's other blanks left as their tags, cut to the tokens
that fit, centred on the blank. The CLUE baselines (after the ChID paper's) read each blank the same way.
Predictions: ``chid_predict.json``, one JSON object ``{"#idiomNNNNNN#": candidate index}`` (``evaluate clue
--package`` names it ``chid11_predict.json``).

Bad input is a ``ValueError`` naming the file and line: not JSON, a missing field, not 10 candidates, a tag seen
twice, a blank without an answer, an answer that is not a candidate index. Nothing is dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from lmforge.tasks.common import TaskBundle

__all__ = ["ChidBlank", "build_chid_task", "read_chid"]

NUM_CANDIDATES = 10
IDIOM_LENGTH = 4  # characters, so [MASK] tokens, standing for the blank
TAG = re.compile(r"#idiom\d+#")


@dataclass
class ChidBlank:
    segments: list[str]  # the passage split at its blanks: len(tags) + 1 pieces of text
    tags: list[str]  # the passage's blanks, in order
    blank: int  # which of them this example is
    candidates: list[str]
    label: int | None  # index of the idiom in candidates; None in test
    where: str  # "file:line", for error messages

    @property
    def id(self) -> str:
        return self.tags[self.blank]


def _read_answers(path: Path) -> dict[str, Any]:
    try:
        answers = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(answers, dict):
        raise ValueError(f"{path}: expected one JSON object mapping '#idiomNNNNNN#' to a candidate index")
    return answers


def _read_file(path: Path, answers: dict[str, Any] | None, answer_path: Path | None, seen: dict[str, str]):
    blanks: list[ChidBlank] = []
    lines = 0
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            lines += 1
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict) or "candidates" not in row or "content" not in row:
                raise ValueError(f"{where}: expected an object with 'candidates' and 'content', got {line.strip():.80}")
            candidates, content = row["candidates"], row["content"]
            if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
                raise ValueError(f"{where}: 'candidates' must be a list of strings")
            if len(candidates) != NUM_CANDIDATES:
                raise ValueError(f"{where}: {len(candidates)} candidates; CHID has {NUM_CANDIDATES}")
            if isinstance(content, str):
                content = [content]
            if not isinstance(content, list) or not all(isinstance(c, str) for c in content):
                raise ValueError(f"{where}: 'content' must be a list of passages (strings)")
            for passage in content:
                tags = TAG.findall(passage)
                segments = TAG.split(passage)
                for b, tag in enumerate(tags):
                    if tag in seen:
                        raise ValueError(f"{where}: blank {tag} already at {seen[tag]}")
                    seen[tag] = where
                    label = None
                    if answers is not None:
                        if tag not in answers:
                            raise ValueError(f"{where}: blank {tag} has no answer in {answer_path}")
                        label = answers[tag]
                        if not (isinstance(label, int) and 0 <= label < NUM_CANDIDATES):
                            raise ValueError(f"{where}: blank {tag}: answer {label!r} in {answer_path} is not a "
                                             f"candidate index (0 to {NUM_CANDIDATES - 1})")  # fmt: skip
                    blanks.append(ChidBlank(segments, tags, b, candidates, label, where))
    return blanks, lines


def read_chid(data_dir: str | Path, *, splits: tuple[str, ...]) -> tuple[dict[str, list[ChidBlank]], dict, dict]:
    """The blanks of each split present (train required when asked for), the files read, the lines read."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"--data_dir {str(data_dir)!r} is not a directory")
    data, files, lines = {}, {}, {}
    for split in splits:
        path = data_dir / f"{split}.json"
        if not path.is_file():
            if split == "train":
                raise ValueError(f"{data_dir} has no train.json")
            continue
        answer_path, answers = None, None
        if split != "test":
            answer_path = data_dir / f"{split}_answer.json"
            if not answer_path.is_file():
                raise ValueError(f"{path} needs its answers in {answer_path}, which is missing")
            answers = _read_answers(answer_path)
        data[split], lines[split] = _read_file(path, answers, answer_path, seen={})
        files[split] = [str(path)] + ([str(answer_path)] if answer_path else [])
    return data, files, lines


def _window(left: list[int], right: list[int], budget: int) -> tuple[list[int], list[int]]:
    """The last tokens of ``left`` and first of ``right``, ``budget`` in all, half each unless one side is short."""
    budget = max(budget, 0)
    keep_left = min(len(left), max(budget // 2, budget - len(right)))
    keep_right = min(len(right), budget - keep_left)
    return left[len(left) - keep_left :], right[:keep_right]


def build_chid_task(
    data_dir: str | Path,
    *,
    tokenizer: Any,
    hidden_size: int,
    pooling: str,
    dropout: float,
    max_seq_length: int,
    splits: tuple[str, ...],
) -> TaskBundle:
    """Read, encode (one ``[CLS] candidate [SEP] window [SEP]`` per candidate) and wrap CHID for the engine."""
    from lmforge.tasks.common import TaskBundle, choice_row, encode_texts, require_cls_sep
    from lmforge.tasks.registry import build_head

    require_cls_sep(tokenizer, "chid")
    data, files, lines = read_chid(data_dir, splits=splits)
    mask_id = tokenizer.mask_token_id
    features: dict[str, list[dict[str, Any]]] = {}
    truncated: dict[str, int] = {}
    for split, blanks in data.items():
        # each passage's segments, tags and candidates tokenized once, shared by its blanks
        passages: dict[int, int] = {}
        texts: list[str] = []
        for blank in blanks:
            if id(blank.segments) not in passages:
                passages[id(blank.segments)] = len(texts)
                texts += [*blank.segments, *blank.tags, *blank.candidates]
        encoded = [ids for ids, _ in encode_texts(tokenizer, texts)]
        rows, cut = [], 0
        for blank in blanks:
            at, k = passages[id(blank.segments)], len(blank.tags)
            segments, tags = encoded[at : at + k + 1], encoded[at + k + 1 : at + 2 * k + 1]
            candidates = encoded[at + 2 * k + 1 : at + 2 * k + 1 + NUM_CANDIDATES]
            b = blank.blank  # between segments[b] and segments[b + 1]; the other tags stay in the text
            left = [t for i in range(b) for t in (*segments[i], *tags[i])] + segments[b]
            right = segments[b + 1] + [t for i in range(b + 1, k) for t in (*tags[i], *segments[i + 1])]
            target = [mask_id] * IDIOM_LENGTH if mask_id is not None else tags[b]
            pairs = []
            for candidate in candidates:
                budget = max_seq_length - 3 - len(candidate) - len(target)
                before, after = _window(left, right, budget)
                cut += len(before) + len(after) < len(left) + len(right)
                pairs.append((candidate, [*before, *target, *after]))
            rows.append(choice_row(pairs, tokenizer=tokenizer, max_length=max_seq_length, label=blank.label))
        features[split], truncated[split] = rows, cut

    def score(split: str, logits: list[Tensor]) -> tuple[dict[str, Any], list[tuple[str, int]]]:
        blanks = data[split]
        predicted = [int(row[:NUM_CANDIDATES].argmax()) for row in logits]
        predictions = [(b.id, p) for b, p in zip(blanks, predicted, strict=True)]
        if split == "test":
            return {}, predictions
        correct = sum(p == b.label for b, p in zip(blanks, predicted, strict=True))
        return {"accuracy": correct / max(len(blanks), 1), "total": len(blanks)}, predictions

    def write_predictions(predictions: list[tuple[str, int]], out_dir: Path) -> Path:
        path = Path(out_dir) / "chid_predict.json"
        path.write_text(json.dumps(dict(predictions), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
        return path

    counts = {
        split: {
            "lines": lines[split],
            "examples": len(blanks),  # one per blank
            "dropped": {},
            "truncated_choices": truncated[split],
            "files": files[split],
        }
        for split, blanks in data.items()
    }
    head_config = {"kind": "multiple_choice", "pooling": pooling, "dropout": dropout}  # rebuilt by build_head
    return TaskBundle(
        name="chid",
        head=build_head(head_config, hidden_size),
        head_config=head_config,
        features=features,
        score=score,
        write_predictions=write_predictions,
        best_metric="accuracy",
        report={"counts": counts},
    )
