"""``lmforge predict RUN --input FILE|-``: run a fine-tuned classifier, tagger or QA model (``lmforge finetune``) on
new text; ``Predictor`` is the Python API the command uses.

    predictor = Predictor.from_pretrained("runs/tnews")        # a fine-tuning run or one of its checkpoints
    predictor(["今天天气很好", "股市大涨"])                        # -> [{"label": ..., "probabilities": {...}}, ...]
    predictor.predict([{"question": "...", "context": "..."}])  # records: the fields below

Input (``--input``, ``-`` = stdin): JSON lines or plain text lines (one text per line; ``--input_format auto``
reads JSON lines when the first non-blank line starts with ``{``); for QA also a CMRC2018/SQuAD JSON file (its
questions). Fields per head:

- sequence classification (the CLUE classification tasks): ``text``, ``text_a``/``text_b``,
  ``sentence1``/``sentence2`` or the task's CLUE fields (``sentence``, ``keyword``/``abst``, WSC ``text`` +
  ``target``) -> ``label`` and ``probabilities`` (softmax, per label name);
- token classification (cluener): ``text`` -> ``tokens``, ``tags`` (one BIO tag per token), ``entities``
  (``type``, ``text``, ``start``, ``end`` exclusive) and ``label`` (CLUENER's ``{type: {entity: [[start, end]]}}``,
  end inclusive);
- span QA (cmrc2018, squad): ``question`` and ``context`` -> ``answer``, ``start``/``end`` (characters of the
  context, end exclusive), ``score`` (start + end logit) and ``probability`` (softmax over the n-best answers).

A record's ``id`` (or ``idx``) is copied to its output line. The encoding is the task's own (``tasks/clue.py``,
``tasks/ner.py``, ``tasks/qa.py``) with the run's settings (``config.yaml``: ``max_seq_length``, ``doc_stride``,
``max_query_length``, ``n_best_size``, ``max_answer_length``): a long QA context is split into windows as in
training; a long classification or NER text is truncated at ``max_seq_length`` tokens and the number of truncated
records is printed on stderr. Bad input (not JSON, a missing field, a run that is not fine-tuned) is a one-line
``ValueError`` naming the file and line.

This module's top level imports no torch (``lmforge --help`` stays fast).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["PredictArgs", "Predictor", "predict", "read_records"]

# Record fields that carry a classification text; a record with none of them is refused before the task's reader.
_CLASSIFICATION_KEYS = ("text", "text_a", "sentence", "sentence1", "keyword")


@dataclass  # not kw_only: the run is positional (lmforge predict RUN)
class PredictArgs:
    model: str
    """A fine-tuning run directory (its kept checkpoint) or one of its checkpoint-STEP directories."""
    input: str = "-"
    """JSON-lines or plain-text file, or - for stdin."""
    output: str | None = None
    """JSON-lines output file (default: stdout)."""
    input_format: Literal["auto", "jsonl", "text"] = "auto"
    """auto: JSON lines when the first non-blank line starts with '{', else one text per line."""
    per_device_eval_batch_size: int = 64
    """Sequences (QA: windows) per forward pass."""
    max_seq_length: int | None = None
    """Override the fine-tuning run's --max_seq_length."""
    use_cpu: bool = False
    """Run on CPU even when CUDA is available."""
    disable_tqdm: bool = False
    """No progress bar on stderr."""

    def __post_init__(self) -> None:
        if self.per_device_eval_batch_size < 1:
            raise ValueError(f"--per_device_eval_batch_size must be >= 1, got {self.per_device_eval_batch_size}")


def read_records(path: str, *, input_format: str = "auto") -> list[tuple[str, dict[str, Any]]]:
    """``(where, record)`` per non-blank line of ``path`` (``-``: stdin); a plain-text line becomes
    ``{"text": line}``, and a CMRC2018/SQuAD JSON file gives one ``{"id", "question", "context"}`` per question.
    ``ValueError`` naming the file and line on bad JSON; on no records at all."""
    name = "<stdin>" if path == "-" else path
    if path == "-":
        lines = sys.stdin.read().splitlines()
    else:
        if not Path(path).is_file():
            raise ValueError(f"--input {path!r} is not a file")
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise ValueError(f"{name}: no input lines")
    if path != "-" and input_format != "text" and _is_squad_document(lines):  # CMRC2018/SQuAD JSON: per question
        from lmforge.tasks.qa import read_qa

        return [(e.where, {"id": e.id, "question": e.question, "context": e.context}) for e in read_qa(Path(path))]
    if input_format == "auto":
        input_format = "jsonl" if numbered[0][1].lstrip().startswith("{") else "text"
    if input_format == "text":
        return [(f"{name}:{number}", {"text": line}) for number, line in numbered]
    from lmforge.tasks.common import json_object

    records = []
    for number, line in numbered:
        where = f"{name}:{number}"
        records.append((where, json_object(line, where)))
    return records


def _is_squad_document(lines: list[str]) -> bool:
    """Whether the whole text is one SQuAD-layout JSON object (``{"data": [...]}``), as CMRC2018's files are."""
    try:
        document = json.loads("\n".join(lines))
    except json.JSONDecodeError:
        return False
    return isinstance(document, dict) and isinstance(document.get("data"), list)


def _string(record: dict[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        problem = "missing" if value is None else f"not a string ({type(value).__name__})"
        raise ValueError(f"{where}: field {key!r} is {problem} (has {sorted(record)})")
    return value


class Predictor:
    """A fine-tuned ``TaskModel`` with its tokenizer and the run's encoding settings; ``predict(records)`` ->
    one output dict per record (module docstring), in input order."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        task: str,
        head: dict[str, Any],
        settings: Any,
        device: Any = "cpu",
        batch_size: int = 64,
        progress: bool = False,
    ):
        self.model, self.tokenizer, self.task, self.head = model.eval(), tokenizer, task, head
        self.settings, self.device, self.batch_size, self.progress = settings, device, batch_size, progress
        self.kind: str = head["kind"]  # sequence_classification, token_classification or span
        self.truncated = 0  # records of the last predict() cut at max_seq_length (classification, NER)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | None = None,
        batch_size: int = 64,
        max_seq_length: int | None = None,
        progress: bool = False,
    ) -> Predictor:
        """Load a fine-tuning run (or checkpoint): model, ``tokenizer/`` and the run's ``config.yaml`` settings."""
        from lmforge.data.tokenizer import load_tokenizer
        from lmforge.tasks.finetune import load_task_model, saved_finetune_args
        from lmforge.train.checkpoint import TOKENIZER_DIR
        from lmforge.utils import get_device

        model, info, checkpoint = load_task_model(path)
        task = str(info["task"]).removeprefix("finetune-")
        overrides = {"max_seq_length": max_seq_length} if max_seq_length is not None else {}
        settings = saved_finetune_args(checkpoint, task, **overrides)
        tokenizer = load_tokenizer(checkpoint / TOKENIZER_DIR)
        resolved = get_device(device)
        return cls(model.to(resolved), tokenizer, task=task, head=info["head"], settings=settings, device=resolved,
                   batch_size=batch_size, progress=progress)  # fmt: skip

    def __call__(self, inputs: str | Sequence[str | dict[str, Any]]) -> list[dict[str, Any]]:
        """``predict`` on texts (each becomes ``{"text": ...}``) or records; one string gives a list of one."""
        items = [inputs] if isinstance(inputs, str) else inputs
        return self.predict([{"text": x} if isinstance(x, str) else x for x in items])

    def predict(self, records: Iterable[dict[str, Any]], *, where: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One output per record; ``where`` names each record in error messages (default ``record I``)."""
        records = list(records)
        where = list(where) if where is not None else [f"record {i}" for i in range(len(records))]
        if self.kind == "sequence_classification":
            outputs = self._classify(records, where)
        elif self.kind == "token_classification":
            outputs = self._tag(records, where)
        elif self.kind == "span":
            outputs = self._answer(records, where)
        else:
            raise ValueError(f"head kind {self.kind!r} has no prediction output")
        if self.truncated:
            print(f"predict: {self.truncated} of {len(records)} records were truncated to max_seq_length="
                  f"{self.settings.max_seq_length} tokens", file=sys.stderr)  # fmt: skip
        for record, output in zip(records, outputs, strict=True):
            key = "id" if "id" in record else "idx" if "idx" in record else None
            if key is not None:
                output[key] = record[key]
        return outputs

    # ------------------------------------------------------------------------------------------------- running

    def _logits(self, features: list[dict[str, Any]]) -> list:
        """Per-feature fp32 logits, ``batch_size`` features per forward pass, with a progress bar on stderr."""
        from tqdm.auto import tqdm

        from lmforge.tasks.common import predict_logits

        out: list = []
        starts = range(0, len(features), self.batch_size)
        for start in tqdm(
            starts, desc=f"predict {self.task}", unit="batch", file=sys.stderr, disable=not self.progress
        ):
            out += predict_logits(self.model, features[start : start + self.batch_size], batch_size=self.batch_size,
                                  pad_id=self.tokenizer.pad_token_id, device=self.device)  # fmt: skip
        return out

    def _classification_texts(self, record: dict[str, Any], where: str) -> tuple[str, str | None]:
        from lmforge.tasks.clue import CLUE_TASKS

        if "text_a" in record:
            return _string(record, "text_a", where), _string(record, "text_b", where) if "text_b" in record else None
        if "text" in record and "target" not in record:  # a CLUEWSC record has "text" *and* its "target" spans
            return _string(record, "text", where), None
        if not any(key in record for key in _CLASSIFICATION_KEYS):
            raise ValueError(f"{where}: needs 'text', 'text_a'/'text_b', 'sentence1'/'sentence2' or the {self.task} "
                             f"fields (has {sorted(record)})")  # fmt: skip
        spec = CLUE_TASKS.get(self.task, CLUE_TASKS["classification"])
        return spec.convert(record, where)  # the task's own fields (tasks/clue.py), its errors name the line

    def _classify(self, records: list[dict[str, Any]], where: list[str]) -> list[dict[str, Any]]:
        import torch

        from lmforge.tasks.clue import classification_input
        from lmforge.tasks.common import encode_texts

        pairs = [self._classification_texts(r, w) for r, w in zip(records, where, strict=True)]
        a_ids = [ids for ids, _ in encode_texts(self.tokenizer, [a for a, _ in pairs])]
        b_ids = [ids for ids, _ in encode_texts(self.tokenizer, [b or "" for _, b in pairs])]
        features, self.truncated = [], 0
        for (_, text_b), a, b in zip(pairs, a_ids, b_ids, strict=True):
            feature, cut = classification_input(a, b if text_b is not None else None, tokenizer=self.tokenizer,
                                                max_seq_length=self.settings.max_seq_length)  # fmt: skip
            features.append(feature)
            self.truncated += cut
        labels = self.head["labels"]
        outputs = []
        for logits_C in self._logits(features):
            probabilities = torch.softmax(logits_C, dim=-1).tolist()
            label = labels[int(logits_C.argmax())]  # as tasks/clue.py scores it
            outputs.append({"label": label, "probabilities": dict(zip(labels, probabilities, strict=True))})
        return outputs

    def _tag(self, records: list[dict[str, Any]], where: list[str]) -> list[dict[str, Any]]:
        from lmforge.tasks.common import encode_texts
        from lmforge.tasks.ner import clue_label, decode_tags, ner_input, tagged_entities

        texts = [_string(r, "text", w) for r, w in zip(records, where, strict=True)]
        features, self.truncated = [], 0
        for ids, offsets in encode_texts(self.tokenizer, texts, with_offsets=True):
            feature, cut = ner_input(
                ids, offsets, tokenizer=self.tokenizer, max_seq_length=self.settings.max_seq_length
            )
            features.append(feature)
            self.truncated += cut
        outputs = []
        for text, feature, logits_TC in zip(texts, features, self._logits(features), strict=True):
            offsets = feature["offsets"]
            tags = decode_tags(logits_TC, len(offsets), self.head["labels"])
            spans = tagged_entities(tags, offsets)
            entities = [{"type": k, "text": text[s : e + 1], "start": s, "end": e + 1} for k, s, e in spans]
            outputs.append({"tokens": [text[s:e] for s, e in offsets], "tags": tags, "entities": entities,
                            "label": clue_label(text, spans)})  # fmt: skip
        return outputs

    def _answer(self, records: list[dict[str, Any]], where: list[str]) -> list[dict[str, Any]]:
        from lmforge.heads.qa import SpanWindow, decode_spans, split_span_logits
        from lmforge.tasks.common import encode_texts
        from lmforge.tasks.qa import make_windows

        questions = [_string(r, "question", w) for r, w in zip(records, where, strict=True)]
        contexts = [_string(r, "context", w) for r, w in zip(records, where, strict=True)]
        s = self.settings
        question_ids = encode_texts(self.tokenizer, questions)
        context_ids = encode_texts(self.tokenizer, contexts, with_offsets=True)
        features, owner = [], []
        for i, ((q_ids, _), (c_ids, offsets)) in enumerate(zip(question_ids, context_ids, strict=True)):
            windows = make_windows(
                q_ids[: s.max_query_length], c_ids, offsets, cls_id=self.tokenizer.cls_token_id,
                sep_id=self.tokenizer.sep_token_id, max_seq_length=s.max_seq_length, doc_stride=s.doc_stride,
            )  # fmt: skip
            features += windows
            owner += [i] * len(windows)
        self.truncated = 0  # long contexts are windowed, never cut
        windows_of: list[list[SpanWindow]] = [[] for _ in records]
        for i, feature, logits_T2 in zip(owner, features, self._logits(features), strict=True):
            start_T, end_T = split_span_logits(logits_T2)
            windows_of[i].append(SpanWindow(start_T, end_T, feature["offsets"], feature["max_context"]))
        outputs = []
        for context, windows in zip(contexts, windows_of, strict=True):
            best = decode_spans(windows, context, n_best=s.n_best_size, max_answer_length=s.max_answer_length)[0]
            outputs.append({"answer": best.text, "start": best.char_start, "end": best.char_end,
                            "score": best.score, "probability": best.probability})  # fmt: skip
        return outputs


def predict(args: PredictArgs) -> list[dict[str, Any]]:
    """The ``lmforge predict`` stage: read, predict in batches, write JSON lines; returns the outputs."""
    numbered = read_records(args.input, input_format=args.input_format)  # bad input fails before the model loads
    # stdout carries the JSON lines only, and an error is the only line of a failed run: what the loader prints
    # ("model: ...") is held back and goes to stderr after the predictions
    loader_says = io.StringIO()
    with contextlib.redirect_stdout(loader_says), contextlib.redirect_stderr(loader_says):
        predictor = Predictor.from_pretrained(
            args.model, device="cpu" if args.use_cpu else None, batch_size=args.per_device_eval_batch_size,
            max_seq_length=args.max_seq_length, progress=not args.disable_tqdm,
        )  # fmt: skip
    outputs = predictor.predict([r for _, r in numbered], where=[w for w, _ in numbered])
    print(loader_says.getvalue(), end="", file=sys.stderr)
    lines = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in outputs)
    if args.output is None:
        sys.stdout.write(lines)
        sys.stdout.flush()
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(lines, encoding="utf-8")
        print(f"predict: {len(outputs)} predictions -> {args.output}", file=sys.stderr)
    return outputs
