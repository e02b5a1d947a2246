"""TyDi QA primary-task records in the official jsonl format (byte offsets), mixing scripts: Chinese (3 bytes a
character), Arabic (2), Korean (3), English (1) and emoji (4). Written by the tests; nothing is downloaded."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

DOCUMENTS = {
    "chinese": ["北京是中国的首都。", "长城很长。", "上海是一个大城市 😀。"],
    "arabic": ["القاهرة عاصمة مصر.", "النيل نهر طويل."],
    "korean": ["서울은 한국의 수도입니다.", "김치는 맛있어요 🙂."],
    "english": ["Paris is the capital of France.", "The Seine is a river."],
}
# (id, language, question, passage index or -1, minimal answer text or None, yes/no)
QUESTIONS = [
    (101, "chinese", "中国的首都是哪里？", 0, "北京", "NONE"),
    (102, "chinese", "长城长吗？", 1, None, "YES"),
    (103, "chinese", "哪里有笑脸？", 2, "😀", "NONE"),
    (201, "arabic", "ما عاصمة مصر؟", 0, "القاهرة", "NONE"),
    (202, "arabic", "ما هو النيل؟", 1, None, "NONE"),
    (301, "korean", "한국의 수도는?", 0, "서울", "NONE"),
    (302, "korean", "무엇이 맛있어요?", -1, None, "NONE"),
    (401, "english", "What is the capital of France?", 0, "Paris", "NONE"),
]


def byte_span(text: str, part: str, start_char: int = 0) -> tuple[int, int]:
    start = text.index(part, start_char)
    return len(text[:start].encode()), len(text[: start + len(part)].encode())


def record(example_id, language, question, passage, minimal, yes_no, *, annotators: int = 1) -> dict:
    passages = DOCUMENTS[language]
    document = "\n".join(passages)
    candidates, position = [], 0
    for text in passages:
        start, end = byte_span(document, text, position)
        candidates.append({"plaintext_start_byte": start, "plaintext_end_byte": end})
        position = document.index(text, position) + len(text)
    start = end = -1
    if minimal is not None:
        passage_start = document.index(passages[passage])
        start, end = byte_span(document, minimal, passage_start)
    annotation = {
        "passage_answer": {"candidate_index": passage},
        "minimal_answer": {"plaintext_start_byte": start, "plaintext_end_byte": end},
        "yes_no_answer": yes_no,
    }
    return {
        "example_id": example_id,
        "language": language,
        "question_text": question,
        "document_title": language,
        "document_url": f"https://example.org/{language}",
        "document_plaintext": document,
        "passage_answer_candidates": candidates,
        "annotations": [annotation] * annotators,
    }


def write_tydi(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def tydi_dir(root: Path) -> Path:
    """train (gzip, one annotation) and dev (three identical annotations, as the dev set's 3-way annotation)."""
    write_tydi(root / "tydiqa-v1.0-train.jsonl.gz", [record(*q) for q in QUESTIONS])
    write_tydi(root / "tydiqa-v1.0-dev.jsonl", [record(*q, annotators=3) for q in QUESTIONS])
    return root
