"""Build the bundled tiny SFT example data (``src/lmforge/assets/sft/{train,dev}.jsonl``) from the bundled corpus.

Three kinds of conversation, all from files that ship in ``data/`` (``scripts/build_corpus.py``), so a GPT pretrained
on ``data/corpus`` has read every text and SFT only has to teach the format:

* continue a poem (``prompt``/``response``): ``续写这首诗：`` + the first verse line of a Tang/Song poem -> the
  second line;
* who wrote it (``messages`` with a system turn): ``《title》的作者是谁？`` -> the byline (``唐·李白``);
* which module a LibreOffice help sentence belongs to (``messages``, two turns: the sentence, then a follow-up
  asking for the module's English name) from ``data/clue/lo_topic`` (train rows for train, dev rows for dev).

Deterministic (seeded ``random.Random``); poems are split by poem, so no dev poem is in train. Rerun after the
corpus changes::

    .venv/bin/python scripts/build_sft_data.py
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "你是一个熟悉古诗和 LibreOffice 的助手。"


def _poems(corpus: Path) -> list[tuple[str, str, list[str]]]:
    """(title, byline, verse lines) of Tang and Song shi whose lines are short and complete."""
    out = []
    for line in (corpus / "poetry.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["source"] not in ("chinese-poetry/tang_shi", "chinese-poetry/song_shi"):
            continue
        title, byline, *verses = record["text"].split("\n")
        if len(verses) >= 2 and all(4 <= len(v) <= 24 and v.endswith("。") for v in verses[:2]):
            out.append((title, byline, verses))
    return out


def _lo_topic(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build(rng: random.Random, poems: list, topics: list[dict], *, n_poem: int, n_author: int, n_topic: int) -> list:
    rows = []
    for _title, _byline, verses in rng.sample(poems, n_poem):
        rows.append({"prompt": f"续写这首诗：{verses[0]}", "response": verses[1]})
    for title, byline, _ in rng.sample(poems, n_author):
        rows.append({"messages": [{"role": "system", "content": SYSTEM},
                                  {"role": "user", "content": f"《{title}》的作者是谁？"},
                                  {"role": "assistant", "content": byline}]})  # fmt: skip
    for row in rng.sample(topics, n_topic):
        rows.append({"messages": [{"role": "user", "content": f"这句帮助说明属于哪个模块？{row['sentence']}"},
                                  {"role": "assistant", "content": f"属于 {row['label_desc']} 模块。"},
                                  {"role": "user", "content": "只说模块名。"},
                                  {"role": "assistant", "content": row["label_desc"]}]})  # fmt: skip
    rng.shuffle(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=str(ROOT / "data"))
    parser.add_argument("--output_dir", default=str(ROOT / "src/lmforge/assets/sft"))
    args = parser.parse_args()
    data, out = Path(args.data_dir), Path(args.output_dir)
    rng = random.Random(0)
    poems = _poems(data / "corpus")
    rng.shuffle(poems)
    dev_poems, train_poems = poems[:60], poems[60:]
    splits = {
        "train": build(rng, train_poems, _lo_topic(data / "clue/lo_topic/train.jsonl"), n_poem=120, n_author=80,
                       n_topic=60),
        "dev": build(rng, dev_poems, _lo_topic(data / "clue/lo_topic/dev.jsonl"), n_poem=16, n_author=12, n_topic=12),
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / f"{split}.jsonl").write_text(text, encoding="utf-8")
        print(f"{out / f'{split}.jsonl'}: {len(rows)} conversations")


if __name__ == "__main__":
    main()
