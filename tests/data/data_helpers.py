"""Generated inputs for the data-pipeline tests (imported by the tests and by ``conftest.py``)."""

from __future__ import annotations

import json
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLED_CORPUS = REPO / "data" / "corpus"

# Short Chinese documents with Latin words, digits and punctuation: enough structure for segmentation.
SENTENCES = [
    "我们在北京天安门广场看升旗仪式。",
    "自然语言处理是人工智能的一个重要方向。",
    "他用 Python 写了一个简单的分词程序，速度很快。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "LibreOffice 的电子表格可以计算 3.14 乘以 2 的结果。",
    "研究生命的起源需要跨学科的合作。",
    "请点击工具栏上的「插入」按钮，然后选择表格。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
]


def make_documents(count: int, *, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 6))) for _ in range(count)]


def write_jsonl(path: Path, texts: list[str], field: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"id": str(i), field: text}, ensure_ascii=False) + "\n")
    return path
