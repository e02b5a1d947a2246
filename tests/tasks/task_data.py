"""A learnable synthetic classification task in TNEWS-like JSON lines, for the fine-tuning tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = "春夏秋冬山水花月"
NEGATIVE = "金木火土风雨雷电"
OTHER = (  # common characters, so the vocabulary is not all task characters
    "北京上海中国的是在了人有我他这个们来到大地为子中你说生国年着就那和要她出也得里后自以会家可下而过天去"
    "能对小多然于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己面最女但现前些所同日手又行"
    "意动方期它头经长儿回位分爱老因很给名法间斯知世什两次使身者被高已亲其进此话常与活正感"
)


def synthetic_rows(n: int, *, seed: int) -> list[dict]:
    """Sentences of "positive" or "negative" characters; learnable from any single character."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choice(["pos", "neg"])
        pool = POSITIVE if label == "pos" else NEGATIVE
        rows.append({"id": i, "sentence": "".join(rng.choice(pool) for _ in range(rng.randint(4, 10))), "label": label})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# CLUENER lines in the official format (inclusive character ends)
NER_ROWS = [
    {"text": "北京大学的小明去了上海", "label": {"organization": {"北京大学": [[0, 3]]}, "name": {"小明": [[5, 6]]},
                                           "address": {"上海": [[9, 10]]}}},
    {"text": "他在看书", "label": {}},
    {"text": "小红和小明", "label": {"name": {"小红": [[0, 1]], "小明": [[3, 4]]}}},
]  # fmt: skip


CONTEXTS = [
    "北京是中国的首都，上海是中国最大的城市。",
    "春天的花开了，夏天的雨来了，秋天的月亮很好，冬天的风很大。",
    "我们一起去公园玩吧，天气预报说今天的天气很好。",
]


def cmrc_document(with_answers: bool = True) -> dict:
    """Three paragraphs in the CMRC2018 (SQuAD v1.1) layout; answers are substrings of their contexts."""
    qas = [
        ("TRAIN_0_QUERY_0", "中国的首都是哪里", 0, "北京"),
        ("TRAIN_1_QUERY_0", "秋天的什么很好", 1, "月亮"),
        ("TRAIN_2_QUERY_0", "天气怎么样", 2, "很好"),
    ]
    paragraphs = []
    for qid, question, c, answer in qas:
        context = CONTEXTS[c]
        answers = [{"text": answer, "answer_start": context.index(answer)}] if with_answers else []
        paragraphs.append({"id": f"P{c}", "context": context, "qas": [{"id": qid, "question": question,
                                                                        "answers": answers}]})  # fmt: skip
    return {"version": "v1.0", "data": [{"id": "D0", "title": "t", "paragraphs": paragraphs}]}
