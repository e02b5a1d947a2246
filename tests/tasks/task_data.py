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
