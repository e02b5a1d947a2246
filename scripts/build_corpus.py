"""Build lmforge's small bundled Chinese corpus and its two CLUE-format classification tasks.

What: reads two licensed registry packages that are installed outside the repository and writes, under
``--output_dir`` (default ``data``):

* ``corpus/poetry.jsonl``: classical Chinese poems, ci, qu and prose from the npm package ``chinese-poetry`` (MIT),
  converted to Simplified Chinese with OpenCC ``t2s``;
* ``corpus/libreoffice_help.jsonl``: modern Simplified-Chinese prose from the Debian package
  ``libreoffice-help-zh-cn`` (MPL-2.0), the HTML help pages reduced to plain paragraphs;
* ``clue/lo_topic/``: TNEWS-like topic task, a help-page sentence -> the LibreOffice module it documents;
* ``clue/poem_genre/``: a poem's opening -> its genre/dynasty (诗经, 唐诗, 五代词, 宋诗, 宋词, 元曲);
* ``LICENSES/`` (the upstream licence texts) and ``README.md`` (provenance, commands, counts, label distributions).

Why: the demo, the tests and a tiny pretraining run need real Chinese text that ships with the repository, is
licensed for redistribution and can be rebuilt from public registries without scraping the web (byte for byte,
given the same package versions: chinese-poetry 2.0.1, libreoffice-help-zh-cn 4:7.4.7-1+deb12u14, opencc 1.4.2).

Every record is ``{"id", "text", "source"}``; every labelled example is ``{"sentence", "label", "label_desc"}``
(CLUE/TNEWS style, string label ids starting at "100"). Texts are NFC-normalised, whitespace-collapsed and
de-duplicated. Train/dev splits never share a sentence (``lo_topic`` is split by help page), and no dev example of
either task occurs in the corpus files, so a model pretrained on the corpus has never seen the dev texts.
The output is deterministic: files are read in sorted order and every sample uses a seeded RNG.

Reproduce (network needed only for the two registry downloads)::

    mkdir -p /tmp/corpus-src && cd /tmp/corpus-src
    npm pack chinese-poetry@2.0.1 && mkdir -p chinese-poetry \\
        && tar xzf chinese-poetry-2.0.1.tgz -C chinese-poetry --strip-components=1
    apt-get update && apt-get download libreoffice-help-zh-cn && dpkg -x libreoffice-help-zh-cn_*.deb lo
    cd /work/main && .venv/bin/pip install opencc    # the project's ``corpus`` extra
    .venv/bin/python scripts/build_corpus.py --poetry_dir /tmp/corpus-src/chinese-poetry \\
        --libreoffice_dir /tmp/corpus-src/lo --output_dir data

``--libreoffice_dir /`` also works after ``apt-get install libreoffice-help-zh-cn``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import shutil
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

POETRY_HINT = (
    "install it with: mkdir -p /tmp/corpus-src && cd /tmp/corpus-src && npm pack chinese-poetry@2.0.1 "
    "&& mkdir -p chinese-poetry && tar xzf chinese-poetry-2.0.1.tgz -C chinese-poetry --strip-components=1"
)
LO_HINT = (
    "install it with: apt-get update && mkdir -p /tmp/corpus-src && cd /tmp/corpus-src "
    "&& apt-get download libreoffice-help-zh-cn && dpkg -x libreoffice-help-zh-cn_*.deb lo "
    "(then pass --libreoffice_dir /tmp/corpus-src/lo)"
)
LO_HELP_SUBDIR = Path("usr/share/libreoffice/help/zh-CN")
LO_DOC_SUBDIR = Path("usr/share/doc/libreoffice-help-zh-cn")
MPL_TEXT = Path("/usr/share/common-licenses/MPL-2.0")

CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
SPACE_RE = re.compile(r"[ \t\r\f\v\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000\ufeff]+")
PUNCT_OR_SPACE_RE = re.compile(r"[\W_]+")
# Editorial notes inside poems: variant readings "（一作…）", stage directions "(正末云)", tune marks "［玉楼春］".
POEM_NOTE_RE = re.compile(r"[（(][^（）()]{0,40}[）)]|[［\[][^［］\[\]]{0,20}[］\]]|\{[^{}]{0,20}\}")
# What must not survive cleaning: missing-character boxes, markup, Latin/digits, kana, unbalanced brackets.
POEM_BAD_RE = re.compile(r"[□■○A-Za-z0-9<>=_/\\{}\[\]()（）［］\u3040-\u30ff]")
SENTENCE_END_RE = re.compile(r"(?<=[。！？；!?;])")


# ----------------------------------------------------------------------------------------------------------------
# Generic helpers
# ----------------------------------------------------------------------------------------------------------------


def die(message: str) -> NoReturn:
    """Report a user error (a missing source, a bad option) on one line and exit with status 2."""
    print(f"build_corpus: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def normalize_text(text: str) -> str:
    """NFC-normalise, collapse horizontal whitespace inside each line, strip lines and drop empty ones."""
    text = unicodedata.normalize("NFC", text)
    lines = (SPACE_RE.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def cjk_count(text: str) -> int:
    """Number of CJK ideographs in ``text``."""
    return len(CJK_RE.findall(text))


def cjk_ratio(text: str) -> float:
    """Share of CJK ideographs among the non-space characters of ``text``."""
    chars = [c for c in text if not c.isspace()]
    return cjk_count(text) / len(chars) if chars else 0.0


def dedup_key(text: str) -> str:
    """Text with punctuation and whitespace removed: two texts with the same key count as duplicates."""
    return PUNCT_OR_SPACE_RE.sub("", text)


def utf8_len(text: str) -> int:
    """Size of ``text`` in UTF-8 bytes."""
    return len(text.encode("utf-8"))


def natural_key(path: Path) -> tuple[Any, ...]:
    """Sort key that orders ``poet.tang.1000.json`` after ``poet.tang.2.json``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path)))


def seeded_rng(seed: int, name: str) -> random.Random:
    """An RNG per purpose, so that adding a sampling step elsewhere never shifts this one."""
    return random.Random(f"{seed}:{name}")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` as UTF-8 JSON lines (non-ASCII kept as is); return the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def snippet(text: str, max_chars: int) -> str:
    """Leading part of ``text`` of at most ``max_chars`` characters, cut after a sentence or clause if possible."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    for marks in ("。！？；", "，、："):
        cut = max(head.rfind(m) for m in marks)
        if cut >= max_chars // 3:
            return head[: cut + 1]
    return head


@dataclass
class Tally:
    """Counts of what each stage kept and skipped, printed at the end and written into the README."""

    kept: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    def keep(self, what: str, n: int = 1) -> None:
        self.kept[what] += n


# ----------------------------------------------------------------------------------------------------------------
# chinese-poetry
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Poem:
    """One poem (or one prose chapter) of chinese-poetry, already converted to Simplified Chinese."""

    collection: str  # key of COLLECTIONS
    ref: str  # stable id: relative file path and index
    title: str
    byline: str  # "唐·李白", "诗经·国风·周南", ...
    lines: list[str]

    @property
    def body(self) -> str:
        return "".join(self.lines)

    @property
    def text(self) -> str:
        return "\n".join([self.title, self.byline, *self.lines] if self.byline else [self.title, *self.lines])


@dataclass(frozen=True)
class Collection:
    """A part of chinese-poetry: which files, how to read a record, and its role in the outputs."""

    key: str
    name: str  # human name, used as source suffix and genre label
    globs: tuple[str, ...]
    dynasty: str
    kind: str  # "verse" (cleaned line by line) or "prose"
    sampled: bool  # True: sampled into the corpus under a byte budget; False: included whole
    weight: float = 0.0  # share of the sampled budget


COLLECTIONS: tuple[Collection, ...] = (
    Collection("shijing", "诗经", ("shijing/shijing.json",), "先秦", "verse", False),
    Collection("chuci", "楚辞", ("chuci/chuci.json",), "先秦", "verse", False),
    Collection("lunyu", "论语", ("lunyu/lunyu.json",), "先秦", "prose", False),
    Collection("mengzi", "孟子", ("sishuwujing/mengzi.json",), "先秦", "prose", False),
    Collection(
        "daxue_zhongyong", "大学中庸", ("sishuwujing/daxue.json", "sishuwujing/zhongyong.json"), "先秦", "prose", False
    ),
    Collection("caocao", "曹操诗集", ("caocaoshiji/caocao.json",), "汉", "verse", False),
    Collection("guwenguanzhi", "古文观止", ("mengxue/guwenguanzhi.json",), "", "prose", True, 0.22),
    Collection(
        "wudai_ci",
        "五代词",
        ("wudaishici/huajianji/huajianji-*-juan.json", "wudaishici/nantang/poetrys.json"),
        "五代",
        "verse",
        False,
    ),
    Collection("nalan", "纳兰词", ("nalanxingde/*.json",), "清", "verse", False),
    Collection("tang_shi", "唐诗", ("quantangshi/poet.tang.*.json",), "唐", "verse", True, 0.26),
    Collection("song_shi", "宋诗", ("quantangshi/poet.song.*.json",), "宋", "verse", True, 0.16),
    Collection("song_ci", "宋词", ("songci/ci.song.*.json",), "宋", "verse", True, 0.24),
    Collection("yuan_qu", "元曲", ("yuanqu/yuanqu.json",), "元", "verse", True, 0.12),
)
COLLECTION_BY_KEY = {c.key: c for c in COLLECTIONS}
# The poem_genre task: label id, label_desc (the collection's name) and the collection, in chronological order.
GENRE_COLLECTIONS: tuple[str, ...] = ("shijing", "tang_shi", "wudai_ci", "song_shi", "song_ci", "yuan_qu")


class T2S:
    """OpenCC Traditional -> Simplified conversion (the ``opencc`` PyPI package, config ``t2s``)."""

    def __init__(self) -> None:
        try:
            import opencc
        except ImportError:
            die("the 'opencc' package is missing; pip install opencc (extra 'corpus')")
        self._cc = opencc.OpenCC("t2s")

    def __call__(self, text: str) -> str:
        return self._cc.convert(text)


def _records(collection: Collection, data: Any) -> Iterator[tuple[str, str, list[str]]]:
    """Yield ``(title, byline, paragraphs)`` for every record of one chinese-poetry JSON file (raw text)."""
    key, dyn = collection.key, collection.dynasty
    if key == "guwenguanzhi":
        for volume in data["content"]:
            for piece in volume["content"]:
                author = piece.get("author", "").replace("：", "·").strip()
                source = piece.get("source", "")
                yield piece["chapter"], f"{author}{source}", piece["paragraphs"]
        return
    for rec in [data] if isinstance(data, dict) else data:  # 大学 and 中庸 are single objects
        if key == "shijing":
            yield rec["title"], f"诗经·{rec['chapter']}·{rec['section']}", rec["content"]
        elif key == "chuci":
            yield rec["title"], f"楚辞·{rec['author']}", rec["content"]
        elif collection.kind == "prose":
            yield f"{collection.name}·{rec['chapter']}", "", rec["paragraphs"]
        elif key == "caocao":
            yield rec["title"], "汉·曹操", rec["paragraphs"]
        elif key == "nalan":
            yield rec["title"], f"清·{rec['author']}", rec["para"]
        else:
            title = rec.get("title") or rec.get("rhythmic") or ""
            if key == "song_ci" and rec.get("rhythmic"):
                title = rec["rhythmic"]
            yield title, f"{dyn}·{rec.get('author', '佚名')}", rec.get("paragraphs") or []


def _clean_verse_line(line: str) -> str:
    return POEM_NOTE_RE.sub("", line).strip()


def load_poetry(poetry_dir: Path, t2s: T2S, tally: Tally) -> dict[str, list[Poem]]:
    """Read every collection of chinese-poetry, clean it and convert it to Simplified Chinese."""
    dist = poetry_dir / "dist"
    out: dict[str, list[Poem]] = {}
    for col in COLLECTIONS:
        files = sorted({p for pattern in col.globs for p in dist.glob(pattern)}, key=natural_key)
        if not files:
            die(f"no files for {col.key} under {dist}; {POETRY_HINT}")
        poems: list[Poem] = []
        records = (rec for path in files for rec in _records(col, json.loads(path.read_text(encoding="utf-8"))))
        for n_read, (title, byline, paragraphs) in enumerate(records):
            raw = "\n".join([title, byline, *(p.replace("\n", "") for p in paragraphs)])
            fields = [normalize_text(x) for x in t2s(raw).split("\n")]
            title, byline, lines = fields[0], fields[1], fields[2:]
            if col.kind == "verse":
                lines = [_clean_verse_line(x) for x in lines]
            title = _clean_verse_line(title).strip("・·") or title
            byline = _clean_verse_line(byline)
            lines = [x for x in lines if x]
            body = "".join(lines)
            if col.kind == "verse" and POEM_BAD_RE.search(body):
                tally.skip(f"poetry/{col.key}: markup, notes or missing characters")
                continue
            if cjk_count(body) < 8:
                tally.skip(f"poetry/{col.key}: empty or shorter than 8 characters")
                continue
            poems.append(Poem(col.key, f"{col.key}-{n_read:06d}", title or "无题", byline, lines))
        out[col.key] = poems
    return out


def dedup_poems(poems: dict[str, list[Poem]], tally: Tally) -> dict[str, list[Poem]]:
    """Drop repeated bodies: within a collection keep the first; a body found in two collections is dropped."""
    owners: dict[str, set[str]] = defaultdict(set)
    for key, items in poems.items():
        for p in items:
            owners[dedup_key(p.body)].add(key)
    out: dict[str, list[Poem]] = {}
    for key, items in poems.items():
        seen: set[str] = set()
        kept = []
        for p in items:
            k = dedup_key(p.body)
            if len(owners[k]) > 1:
                tally.skip(f"poetry/{key}: same body in two collections")
            elif k in seen:
                tally.skip(f"poetry/{key}: duplicate body")
            else:
                seen.add(k)
                kept.append(p)
        out[key] = kept
    return out


def build_poem_genre(
    poems: dict[str, list[Poem]], args: argparse.Namespace, tally: Tally
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]], dict[str, int], set[str]]:
    """Labelled openings of poems -> genre.

    Returns train, dev, labels, the number of usable poems per label and the refs of the dev poems.
    """
    labels = [{"label": str(100 + i), "label_desc": COLLECTION_BY_KEY[k].name} for i, k in enumerate(GENRE_COLLECTIONS)]
    # A sentence that opens poems of two genres is ambiguous: drop it everywhere.
    sentence_owners: dict[str, set[str]] = defaultdict(set)
    for key in GENRE_COLLECTIONS:
        for p in poems[key]:
            sentence_owners[snippet(p.body, args.poem_sentence_chars)].add(key)
    train: list[dict[str, str]] = []
    dev: list[dict[str, str]] = []
    dev_refs: set[str] = set()
    available: dict[str, int] = {}
    for lab, key in zip(labels, GENRE_COLLECTIONS):
        pool: list[tuple[str, Poem]] = []
        seen: set[str] = set()
        for p in poems[key]:
            s = snippet(p.body, args.poem_sentence_chars)
            if len(sentence_owners[s]) > 1 or s in seen:
                tally.skip("poem_genre: opening shared with another poem")
                continue
            seen.add(s)
            pool.append((s, p))
        seeded_rng(args.seed, f"poem_genre:{key}").shuffle(pool)
        available[lab["label"]] = len(pool)
        n_dev = min(args.poem_dev_per_label, round(args.dev_fraction * len(pool)))
        n_train = min(args.poem_train_per_label, len(pool) - n_dev)
        for split, items in ((dev, pool[:n_dev]), (train, pool[n_dev : n_dev + n_train])):
            split.extend({"sentence": s, "label": lab["label"], "label_desc": lab["label_desc"]} for s, _ in items)
        dev_refs.update(p.ref for _, p in pool[:n_dev])
    seeded_rng(args.seed, "poem_genre:order:train").shuffle(train)
    seeded_rng(args.seed, "poem_genre:order:dev").shuffle(dev)
    return train, dev, labels, available, dev_refs


def build_poetry_corpus(
    poems: dict[str, list[Poem]], exclude_refs: set[str], max_bytes: int, seed: int, tally: Tally
) -> list[dict[str, str]]:
    """Whole small collections first, then seeded samples of the big ones filling the rest of the byte budget."""
    docs: list[dict[str, str]] = []
    used = 0

    def add(p: Poem) -> None:
        nonlocal used
        docs.append({"id": p.ref, "text": p.text, "source": f"chinese-poetry/{p.collection}"})
        used += utf8_len(p.text)
        tally.keep(f"poetry/{p.collection}")

    for col in COLLECTIONS:
        if col.sampled:
            continue
        for p in poems[col.key]:
            if p.ref in exclude_refs:
                tally.skip("poetry: held out (dev example of poem_genre)")
            elif used + utf8_len(p.text) > max_bytes:
                tally.skip("poetry: over the size cap")
            else:
                add(p)
    remaining = max(0, max_bytes - used)
    sampled = [c for c in COLLECTIONS if c.sampled]
    total_weight = sum(c.weight for c in sampled)
    for col in sampled:
        budget = remaining * col.weight / total_weight
        order = list(range(len(poems[col.key])))
        seeded_rng(seed, f"corpus:{col.key}").shuffle(order)
        chosen: list[int] = []
        spent = 0
        for i in order:
            p = poems[col.key][i]
            if p.ref in exclude_refs:
                continue
            size = utf8_len(p.text)
            if spent + size > budget:
                break
            chosen.append(i)
            spent += size
        for i in sorted(chosen):
            add(poems[col.key][i])
        tally.skip("poetry: not sampled (size cap)", len(poems[col.key]) - len(chosen))
    return docs


# ----------------------------------------------------------------------------------------------------------------
# libreoffice-help-zh-cn
# ----------------------------------------------------------------------------------------------------------------

BLOCK_TAGS = frozenset(
    [
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "li",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "td",
        "th",
        "tr",
        "table",
        "div",
        "br",
        "pre",
        "section",
        "article",
        "blockquote",
    ]
)
HEADING_TAGS = frozenset(["h1", "h2", "h3", "h4", "h5", "h6"])
VOID_TAGS = frozenset(
    ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"]
)
# Subtrees that are navigation, code or the hidden macOS/Windows/Unix variants of a switch (the default stays).
SKIP_TAGS = frozenset(["head", "script", "style", "noscript", "header", "aside", "footer", "nav", "pre", "code"])
SKIP_CLASSES = frozenset(
    [
        "relatedtopics",
        "howtoget",
        "bascode",
        "code",
        "codeintable",
        "smathcode",
        "debug",
        "noteicon",
        "MAC",
        "WIN",
        "UNIX",
    ]
)


class HelpPageParser(HTMLParser):
    """Collects the visible paragraphs of one LibreOffice help page as ``(kind, text)``; kind is "h" or "p"."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.paragraphs: list[tuple[str, str]] = []
        self._stack: list[tuple[str, bool]] = []
        self._skip_depth = 0
        self._in_title = False
        self._buf: list[str] = []
        self._kind = "p"

    def _flush(self) -> None:
        text = SPACE_RE.sub(" ", "".join(self._buf).replace("\n", " ")).strip()
        if text:
            self.paragraphs.append((self._kind, text))
        self._buf = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in BLOCK_TAGS:
            self._flush()
            self._kind = "h" if tag in HEADING_TAGS else "p"
        if tag in VOID_TAGS:
            return
        classes = set((dict(attrs).get("class") or "").split())
        skip = tag in SKIP_TAGS or bool(classes & SKIP_CLASSES)
        self._stack.append((tag, skip))
        self._skip_depth += skip

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in BLOCK_TAGS:
            self._flush()
            self._kind = "p"
        if all(t != tag for t, _ in self._stack):
            return  # stray end tag
        while self._stack:
            t, skip = self._stack.pop()
            self._skip_depth -= skip
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skip_depth == 0:
            self._buf.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


@dataclass
class HelpPage:
    """The useful paragraphs of one help page."""

    module: str  # first directory under text/: shared, scalc, swriter, ...
    ref: str  # path under text/ without .html
    paragraphs: list[tuple[str, str]]


LO_MODULE_NAMES = {
    "shared": "Shared",
    "swriter": "Writer",
    "scalc": "Calc",
    "simpress": "Impress",
    "sdraw": "Draw",
    "smath": "Math",
    "schart": "Chart",
    "sdatabase": "Base",
    "sbasic": "Basic",
}


def find_lo_help(libreoffice_dir: Path) -> Path:
    """The ``zh-CN`` help directory: ``libreoffice_dir`` itself, or below it as installed by apt/dpkg -x."""
    for cand in (libreoffice_dir, libreoffice_dir / "zh-CN", libreoffice_dir / LO_HELP_SUBDIR):
        if (cand / "text").is_dir():
            return cand
    die(f"no LibreOffice zh-CN help under {libreoffice_dir}; {LO_HINT}")


def find_lo_doc(libreoffice_dir: Path, help_dir: Path) -> Path:
    """Debian's ``/usr/share/doc/libreoffice-help-zh-cn`` (copyright, changelog) next to the help files."""
    for cand in (
        libreoffice_dir / LO_DOC_SUBDIR,
        help_dir.parents[2] / "doc/libreoffice-help-zh-cn",
        Path("/", LO_DOC_SUBDIR),
    ):
        if (cand / "copyright").is_file():
            return cand
    die(f"Debian copyright file of libreoffice-help-zh-cn not found; {LO_HINT}")


def load_help_pages(help_dir: Path, tally: Tally) -> list[HelpPage]:
    """Parse every HTML page under ``text/`` and keep its paragraphs that contain Chinese."""
    pages = []
    for path in sorted((help_dir / "text").rglob("*.html")):
        rel = path.relative_to(help_dir / "text")
        if len(rel.parts) < 2:
            tally.skip("lo: page outside a module directory")
            continue
        parser = HelpPageParser()
        parser.feed(path.read_text(encoding="utf-8"))
        parser.close()
        paragraphs = []
        for kind, text in parser.paragraphs:
            text = normalize_text(text)
            if cjk_count(text) < 2:
                tally.skip(f"lo/{rel.parts[0]}: paragraph without Chinese (untranslated, code, symbols)")
                continue
            tally.keep(f"lo/{rel.parts[0]}: paragraph with Chinese")
            paragraphs.append((kind, text))
        if not paragraphs:
            tally.skip("lo: page without Chinese paragraphs")
            continue
        pages.append(HelpPage(rel.parts[0], rel.with_suffix("").as_posix(), paragraphs))
    return pages


def drop_boilerplate(pages: list[HelpPage], max_pages: int, tally: Tally) -> None:
    """Remove body paragraphs that recur on more than ``max_pages`` pages (shared snippets, stock phrases)."""
    freq: Counter[str] = Counter()
    for page in pages:
        freq.update({text for kind, text in page.paragraphs if kind == "p"})
    for page in pages:
        kept = []
        for kind, text in page.paragraphs:
            if kind == "p" and freq[text] > max_pages:
                tally.skip(f"lo: paragraph repeated on more than {max_pages} pages")
            else:
                kept.append((kind, text))
        page.paragraphs = kept


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph, each ending with its 。！？； (if any)."""
    return [s for s in (x.strip() for x in SENTENCE_END_RE.split(text)) if s]


def paragraph_units(text: str, max_chars: int, min_chars: int) -> list[str]:
    """Sentences of a paragraph packed greedily into units of at most ``max_chars`` characters."""
    units: list[str] = []
    cur = ""
    for sent in split_sentences(text):
        if len(sent) > max_chars:
            if cur:
                units.append(cur)
            units.append(snippet(sent, max_chars))
            cur = ""
        elif len(cur) + len(sent) <= max_chars:
            cur += sent
        else:
            units.append(cur)
            cur = sent
    if cur:
        units.append(cur)
    return [u for u in units if len(u) >= min_chars and cjk_ratio(u) >= 0.3]


def build_lo_topic(
    pages: list[HelpPage], args: argparse.Namespace, tally: Tally
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]], dict[str, int], set[str]]:
    """Help sentences -> module, split by page.

    Returns train, dev, labels, the number of usable sentences per label and the set of dev sentences.
    """
    # Which modules does each sentence occur in (compared without punctuation and spaces)? A unit holding a
    # sentence of another module too is ambiguous and dropped; a unit repeated within a module is kept once.
    owners: dict[str, set[str]] = defaultdict(set)
    for page in pages:
        for _, text in page.paragraphs:
            for sent in split_sentences(text):
                owners[dedup_key(sent)].add(page.module)
    seen: set[str] = set()
    page_units: dict[str, list[str]] = defaultdict(list)
    module_of: dict[str, str] = {}
    for page in pages:
        module_of[page.ref] = page.module
        for _, text in page.paragraphs:
            for u in paragraph_units(text, args.lo_sentence_chars, args.lo_min_sentence_chars):
                key = dedup_key(u)
                if key in seen:
                    continue
                seen.add(key)
                if any(len(owners[dedup_key(x)]) > 1 for x in split_sentences(u)):
                    tally.skip("lo_topic: sentence found in two modules")
                else:
                    page_units[page.ref].append(u)
    by_module: dict[str, list[str]] = defaultdict(list)  # module -> page refs having units
    for ref in sorted(page_units):
        if page_units[ref]:
            by_module[module_of[ref]].append(ref)
    modules = [
        m
        for m in LO_MODULE_NAMES
        if sum(len(page_units[r]) for r in by_module.get(m, [])) >= args.lo_min_per_label and m in by_module
    ]
    for m in sorted(set(by_module) - set(modules)):
        n_units = sum(len(page_units[r]) for r in by_module[m])
        tally.skip(f"lo_topic: sentence of module {m} (fewer than {args.lo_min_per_label} in all)", n_units)
    labels = [{"label": str(100 + i), "label_desc": LO_MODULE_NAMES[m]} for i, m in enumerate(modules)]
    train: list[dict[str, str]] = []
    dev: list[dict[str, str]] = []
    available: dict[str, int] = {}
    for lab, module in zip(labels, modules):
        refs = list(by_module[module])
        rng = seeded_rng(args.seed, f"lo_topic:{module}")
        rng.shuffle(refs)
        total = sum(len(page_units[r]) for r in refs)
        available[lab["label"]] = total
        dev_target = min(args.lo_dev_per_label, round(args.dev_fraction * total))
        dev_units: list[str] = []
        train_units: list[str] = []
        for ref in refs:
            (dev_units if len(dev_units) < dev_target else train_units).extend(page_units[ref])
        if len(dev_units) > args.lo_dev_per_label:
            dev_units = rng.sample(dev_units, args.lo_dev_per_label)
        if len(train_units) > args.lo_train_per_label:
            train_units = rng.sample(train_units, args.lo_train_per_label)
        for split, units in ((train, train_units), (dev, dev_units)):
            split.extend({"sentence": u, "label": lab["label"], "label_desc": lab["label_desc"]} for u in units)
    seeded_rng(args.seed, "lo_topic:order:train").shuffle(train)
    seeded_rng(args.seed, "lo_topic:order:dev").shuffle(dev)
    return train, dev, labels, available, {row["sentence"] for row in dev}


def chunk_page(paragraphs: list[tuple[str, str]], max_chars: int) -> list[str]:
    """Split a page into sections of at most ~``max_chars`` characters, preferring to break before headings."""
    chunks: list[list[str]] = [[]]
    size = 0
    for kind, text in paragraphs:
        over = size + len(text) > max_chars
        at_heading = kind == "h" and size >= max_chars // 2
        if chunks[-1] and (over or at_heading):
            chunks.append([])
            size = 0
        chunks[-1].append(text)
        size += len(text) + 1
    return ["\n".join(c) for c in chunks if c]


def build_lo_corpus(
    pages: list[HelpPage], dev_sentences: set[str], args: argparse.Namespace, tally: Tally
) -> list[dict[str, str]]:
    """One document per page (or per section of a long page); paragraphs holding a dev sentence are left out."""
    docs: list[dict[str, str]] = []
    dev_list = sorted(dev_sentences)
    shortest = min((len(x) for x in dev_list), default=0)
    for page in pages:
        paragraphs = []
        for kind, text in page.paragraphs:
            if len(text) >= shortest and any(x in text for x in dev_list):
                tally.skip("lo: paragraph held out (holds a lo_topic dev sentence)")
            else:
                paragraphs.append((kind, text))
        for i, text in enumerate(chunk_page(paragraphs, args.lo_doc_chars)):
            docs.append({"id": f"lo:{page.ref}#{i}", "text": text, "source": f"libreoffice-help/{page.module}"})
    # Drop tiny and duplicate documents, then sample pages down to the size cap if needed.
    seen: set[str] = set()
    kept = []
    for d in docs:
        k = dedup_key(d["text"])
        if cjk_count(d["text"]) < args.lo_min_doc_chars:
            tally.skip(f"lo: document under {args.lo_min_doc_chars} Chinese characters")
        elif k in seen:
            tally.skip("lo: duplicate document")
        else:
            seen.add(k)
            kept.append(d)
    max_bytes = int(args.max_lo_mb * 1e6)
    if sum(utf8_len(d["text"]) for d in kept) > max_bytes:
        order = list(range(len(kept)))
        seeded_rng(args.seed, "corpus:lo").shuffle(order)
        chosen, used = [], 0
        for i in order:
            size = utf8_len(kept[i]["text"])
            if used + size <= max_bytes:
                chosen.append(i)
                used += size
        tally.skip("lo: document over the size cap", len(kept) - len(chosen))
        kept = [kept[i] for i in sorted(chosen)]
    for d in kept:
        tally.keep(d["source"])
    return kept


# ----------------------------------------------------------------------------------------------------------------
# Licences, versions, README
# ----------------------------------------------------------------------------------------------------------------


def poetry_version(poetry_dir: Path) -> str:
    return json.loads((poetry_dir / "package.json").read_text(encoding="utf-8")).get("version", "unknown")


def lo_version(doc_dir: Path) -> str:
    changelog = doc_dir / "changelog.Debian.gz"
    if changelog.is_file():
        with gzip.open(changelog, "rt", encoding="utf-8") as f:
            m = re.match(r"\S+ \(([^)]+)\)", f.readline())
            if m:
                return m.group(1)
    return "unknown"


def opencc_version() -> str:
    for dist in ("opencc", "OpenCC", "opencc-python-reimplemented"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "opencc (unknown version)"


def copy_licenses(poetry_dir: Path, lo_doc: Path, mpl: Path, out: Path) -> list[str]:
    """Copy the upstream licence texts into ``out``; return the file names."""
    out.mkdir(parents=True, exist_ok=True)
    if not mpl.is_file():
        die(f"{mpl} not found (Debian base-files); pass --mpl_license")
    pairs = [
        (poetry_dir / "LICENSE", "chinese-poetry.MIT.txt"),
        (mpl, "libreoffice-help.MPL-2.0.txt"),
        (lo_doc / "copyright", "libreoffice-help-zh-cn.debian-copyright.txt"),
    ]
    for src, name in pairs:
        shutil.copyfile(src, out / name)
    return [name for _, name in pairs]


def corpus_stats(docs: list[dict[str, str]]) -> dict[str, Any]:
    chars = sum(len(d["text"]) for d in docs)
    return {"docs": len(docs), "chars": chars, "mb": sum(utf8_len(d["text"]) for d in docs) / 1e6}


def label_table(
    train: list[dict[str, str]], dev: list[dict[str, str]], labels: list[dict[str, str]], available: dict[str, int]
) -> str:
    """Markdown table of the label distribution with the majority-class rate of each split."""
    ct, cd = Counter(r["label"] for r in train), Counter(r["label"] for r in dev)
    rows = ["| label | label_desc | available | train | dev |", "|---|---|---:|---:|---:|"]
    rows += [
        f"| {x['label']} | {x['label_desc']} | {available[x['label']]} | {ct[x['label']]} | {cd[x['label']]} |"
        for x in labels
    ]
    rows.append(f"| | **total** | {sum(available.values())} | {len(train)} | {len(dev)} |")
    rows.append(f"| | **majority-class rate** | | {majority(train):.1%} | {majority(dev):.1%} |")
    return "\n".join(rows)


def translated_share(tally: Tally, module: str) -> float:
    """Share of a help module's paragraphs that contain Chinese (the rest is untranslated English or code)."""
    kept = tally.kept[f"lo/{module}: paragraph with Chinese"]
    skipped = tally.skipped[f"lo/{module}: paragraph without Chinese (untranslated, code, symbols)"]
    return kept / (kept + skipped) if kept + skipped else 0.0


def majority(rows: list[dict[str, str]]) -> float:
    """Accuracy of always predicting the most frequent label of ``rows`` (on ``rows`` themselves)."""
    counts = Counter(r["label"] for r in rows)
    return max(counts.values()) / len(rows) if rows else 0.0


def dev_majority_of_train(train: list[dict[str, str]], dev: list[dict[str, str]]) -> float:
    """Dev accuracy of always predicting the most frequent *train* label (the honest constant baseline)."""
    top = Counter(r["label"] for r in train).most_common(1)[0][0]
    return sum(r["label"] == top for r in dev) / len(dev)


README_TEMPLATE = """# Bundled data

Small, real, redistributable Chinese text for the demo, the tests and tiny pretraining runs, plus two labelled
classification tasks in CLUE's JSON-lines format. Everything here is generated by
[`scripts/build_corpus.py`](../scripts/build_corpus.py) from two registry packages; do not edit by hand.
Total size: {total_mb:.2f} MB (UTF-8).

## Files

| path | what |
|---|---|
{files_rows}

Corpus lines are `{{"id": str, "text": str, "source": str}}`; paragraphs or verse lines are separated by `\\n`.
A poem is `title\\nbyline\\nline…` (byline e.g. `唐·李白`, `诗经·国风·周南`); a prose chapter is
`title\\nparagraph…`. `source` is `chinese-poetry/<collection>` or `libreoffice-help/<module>`. Labelled lines
are `{{"sentence": str, "label": str, "label_desc": str}}` as in CLUE's TNEWS; `labels.json` lists
`{{"label", "label_desc"}}` in id order. All text is Simplified Chinese, NFC, whitespace-collapsed.

Documents per source:

| source | documents | characters |
|---|---:|---:|
{source_rows}

## Provenance and licences

| part | package | version | licence |
|---|---|---|---|
{licence_rows}

Traditional characters were converted with {opencc_version} (config `t2s`); the conversion is applied to
every chinese-poetry text (the Tang/Song shi, 古文观止, 孟子, 大学, 中庸 are traditional upstream; the
rest is already simplified and passes through mostly unchanged).

## How it was built

```sh
mkdir -p /tmp/corpus-src && cd /tmp/corpus-src
npm pack chinese-poetry@{poetry_version}
mkdir -p chinese-poetry && tar xzf chinese-poetry-{poetry_version}.tgz -C chinese-poetry --strip-components=1
apt-get update && apt-get download libreoffice-help-zh-cn   # version {lo_version} was used
dpkg -x libreoffice-help-zh-cn_*.deb lo
cd /work/main   # the repository
.venv/bin/pip install opencc
.venv/bin/python scripts/build_corpus.py --poetry_dir /tmp/corpus-src/chinese-poetry \\
    --libreoffice_dir /tmp/corpus-src/lo --output_dir data
```

Command line of this build: `{argv}`.
The build is deterministic (sorted file order, seeded sampling with seed {seed}).

**chinese-poetry.** Included whole: 诗经, 楚辞, 论语, 孟子, 大学, 中庸, 曹操诗集, 五代词 (花间集 +
南唐二主词), 纳兰性德词. Seeded samples of 古文观止, 唐诗 (全唐诗), 宋诗, 宋词 and 元曲 fill the rest of the
size cap ({max_poetry_mb} MB of text) in the proportions {weights}. Editorial notes in verse (variant
readings `（一作…）`, stage directions `(正末云)`, tune marks `［…］`) are removed; poems still holding
missing-character boxes (□), markup, Latin letters or digits are skipped, as are bodies under 8 characters
and duplicate bodies (a body found in two collections is dropped from both). Annotations, notes and author
biographies of the package are not used.

**LibreOffice help.** Every `text/<module>/**/*.html` page is parsed with the standard library's `HTMLParser`.
Dropped: the page header, the index and contents side bars, the footer (debug info), the "要访问此命令…"
(how-to-get) boxes, the "相关主题" (related topics) lists, Basic/SQL/formula code blocks and the hidden
macOS/Windows/Unix variants of inline switches. Kept: headings, paragraphs, list items, notes and table cells,
one per line. Paragraphs with fewer than two Chinese characters (untranslated English, code, symbols) are
dropped, as are body paragraphs repeated on more than {boilerplate_pages} pages. A page becomes one document,
or several sections of ≤ ~{lo_doc_chars} characters split at headings; documents with fewer than
{lo_min_doc_chars} Chinese characters and duplicates are dropped. When the rest holds more text than the cap
({max_lo_mb} MB), whole documents are sampled down to it ({lo_capped} documents were left out that way).

## Labelled tasks

Dev never shares a sentence with train, and the dev sentences of both tasks are held out of the corpus files
(the dev poems are not in `poetry.jsonl`; help paragraphs containing a dev sentence are not in
`libreoffice_help.jsonl`), so pretraining on `data/corpus` does not see the dev texts. Label ids start at
"100" as in TNEWS. "available" is the number of distinct examples before the caps.

### `lo_topic`: which LibreOffice module does this help sentence come from?

Each paragraph is split after 。！？； and the sentences are packed into units of ≤ {lo_chars} characters;
units shorter than {lo_min_chars} characters or less than 30% Chinese are dropped, as are units found in two
modules (shared snippets). The label is the page's top directory (`shared`, `swriter`, `scalc`, `simpress`,
`sdraw`, `smath`, `schart`, `sdatabase`, `sbasic` → Shared, Writer, Calc, Impress, Draw, Math, Chart, Base,
Basic); modules with fewer than {lo_min_per_label} units are left out (in this build: {lo_left_out}).
**The split is by page**: whole pages go to dev until
~{dev_fraction:.0%} of the module's units (at most {lo_dev_cap}) are there; then each label is capped at
{lo_train_cap} train units by seeded sampling (a moderate balance).

{lo_table}

Constant baseline on dev (always predict train's most frequent label): {lo_const:.1%}.

### `poem_genre`: which genre / dynasty is this poem?

The sentence is the poem's body (no title, no author), cut after a sentence or clause so that it has at most
{poem_chars} characters. Openings shared by two poems are dropped. Per label, {dev_fraction:.0%} of the poems
(at most {poem_dev_cap}) go to dev and at most {poem_train_cap} to train, by seeded sampling.

{poem_table}

Constant baseline on dev (always predict train's most frequent label): {poem_const:.1%}.

## Known quirks

- Upstream punctuation differs by collection and is a shortcut for `poem_genre`: 宋词 (the `songci` files)
  ends most short lines with 。 (more 。 than ，), 元曲 often has ？ and ！, the shi alternate ， and 。.
- 元曲 (`yuanqu.json`) mixes 散曲 with arias of 杂剧 and 南戏 (authors like `高明《蔡伯喈琵琶记》`); some entries
  start mid-sentence because the package splits long arias.
- Some upstream poems hold mojibake (stray kana) or □ for missing characters; they are skipped, not repaired.
- The zh-CN help sometimes places 「」 around the wrong span (e.g. `「平铺复选框，并选择自动调整」`); kept as is.
- 古文观止, 孟子, 大学 and 中庸 quote with 「」『』, 论语 with “”‘’; t2s does not change punctuation.

## What the build kept and skipped

```
{tally}
```
"""


def write_readme(out: Path, info: dict[str, Any]) -> None:
    """Fill README_TEMPLATE with this build's versions, commands and counts."""
    p, lo = info["poetry"], info["lo"]
    files_rows = [
        f"| `corpus/poetry.jsonl` | classical poems, ci, qu and prose ({p['docs']} documents, "
        f"{p['chars']:,} characters, {p['mb']:.2f} MB of text) |",
        f"| `corpus/libreoffice_help.jsonl` | LibreOffice help pages or sections ({lo['docs']} documents, "
        f"{lo['chars']:,} characters, {lo['mb']:.2f} MB of text) |",
        "| `clue/lo_topic/{train,dev}.jsonl`, `labels.json` | help sentence → LibreOffice module (TNEWS-like) |",
        f"| `clue/poem_genre/{{train,dev}}.jsonl`, `labels.json` | opening of a poem (≤ {info['poem_chars']} "
        "characters) → genre / dynasty |",
        "| `LICENSES/` | " + ", ".join(f"`{n}`" for n in info["licenses"]) + " |",
    ]
    licence_rows = [
        "| `poetry.jsonl`, `poem_genre` | npm [`chinese-poetry`](https://www.npmjs.com/package/chinese-poetry) | "
        f"{info['poetry_version']} | MIT (`LICENSES/chinese-poetry.MIT.txt`) |",
        "| `libreoffice_help.jsonl`, `lo_topic` | Debian `libreoffice-help-zh-cn` (bookworm) | "
        f"{info['lo_version']} | MPL-2.0 (`LICENSES/libreoffice-help.MPL-2.0.txt`; Debian's notice: "
        "`LICENSES/libreoffice-help-zh-cn.debian-copyright.txt`) |",
    ]
    source_rows = [f"| `{s}` | {n} | {info['per_source_chars'][s]:,} |" for s, n in sorted(info["per_source"].items())]
    fields = {k: v for k, v in info.items() if not isinstance(v, dict | Counter)}
    text = README_TEMPLATE.format(
        files_rows="\n".join(files_rows),
        licence_rows="\n".join(licence_rows),
        source_rows="\n".join(source_rows),
        **fields,
    )
    (out / "README.md").write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--poetry_dir",
        type=Path,
        default=Path("/tmp/corpus-src/chinese-poetry"),
        help="root of the chinese-poetry npm package (holds package.json and dist/)",
    )
    ap.add_argument(
        "--libreoffice_dir",
        type=Path,
        default=Path("/tmp/corpus-src/lo"),
        help="where libreoffice-help-zh-cn is: a dpkg -x target, / after apt install, or the zh-CN dir",
    )
    ap.add_argument("--output_dir", type=Path, default=Path("data"), help="where corpus/, clue/, LICENSES/ go")
    ap.add_argument("--mpl_license", type=Path, default=MPL_TEXT, help="full MPL-2.0 text to copy")
    ap.add_argument("--seed", type=int, default=1234, help="seed of every sampling step")
    ap.add_argument("--max_poetry_mb", type=float, default=1.5, help="size cap of poetry.jsonl texts (UTF-8 MB)")
    ap.add_argument("--max_lo_mb", type=float, default=1.25, help="size cap of libreoffice_help.jsonl texts")
    ap.add_argument("--lo_doc_chars", type=int, default=2000, help="split help pages longer than this")
    ap.add_argument("--lo_min_doc_chars", type=int, default=20, help="drop help documents with fewer CJK chars")
    ap.add_argument("--boilerplate_pages", type=int, default=5, help="drop paragraphs found on more pages")
    ap.add_argument("--dev_fraction", type=float, default=0.15, help="share of each label sent to dev")
    ap.add_argument("--lo_sentence_chars", type=int, default=128, help="max length of a lo_topic sentence")
    ap.add_argument("--lo_min_sentence_chars", type=int, default=10, help="min length of a lo_topic sentence")
    ap.add_argument("--lo_min_per_label", type=int, default=150, help="drop modules with fewer sentences")
    ap.add_argument("--lo_train_per_label", type=int, default=450, help="cap of train sentences per module")
    ap.add_argument("--lo_dev_per_label", type=int, default=80, help="cap of dev sentences per module")
    ap.add_argument("--poem_sentence_chars", type=int, default=64, help="max length of a poem_genre sentence")
    ap.add_argument("--poem_train_per_label", type=int, default=500, help="cap of train poems per genre")
    ap.add_argument("--poem_dev_per_label", type=int, default=80, help="cap of dev poems per genre")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not (args.poetry_dir / "dist").is_dir():
        die(f"chinese-poetry not found at {args.poetry_dir}; {POETRY_HINT}")
    help_dir = find_lo_help(args.libreoffice_dir)
    lo_doc = find_lo_doc(args.libreoffice_dir, help_dir)
    out: Path = args.output_dir
    tally = Tally()

    print("reading chinese-poetry ...", flush=True)
    poems = dedup_poems(load_poetry(args.poetry_dir, T2S(), tally), tally)
    g_train, g_dev, g_labels, g_available, dev_refs = build_poem_genre(poems, args, tally)
    poetry_docs = build_poetry_corpus(poems, dev_refs, int(args.max_poetry_mb * 1e6), args.seed, tally)

    print("reading libreoffice-help-zh-cn ...", flush=True)
    pages = load_help_pages(help_dir, tally)
    drop_boilerplate(pages, args.boilerplate_pages, tally)
    t_train, t_dev, t_labels, t_available, dev_sentences = build_lo_topic(pages, args, tally)
    lo_docs = build_lo_corpus(pages, dev_sentences, args, tally)

    write_jsonl(out / "corpus/poetry.jsonl", poetry_docs)
    write_jsonl(out / "corpus/libreoffice_help.jsonl", lo_docs)
    for task, train, dev, labels in (("lo_topic", t_train, t_dev, t_labels), ("poem_genre", g_train, g_dev, g_labels)):
        write_jsonl(out / f"clue/{task}/train.jsonl", train)
        write_jsonl(out / f"clue/{task}/dev.jsonl", dev)
        (out / f"clue/{task}/labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1) + "\n", "utf-8")
        tally.keep(f"{task}: train", len(train))
        tally.keep(f"{task}: dev", len(dev))
    licenses = copy_licenses(args.poetry_dir, lo_doc, args.mpl_license, out / "LICENSES")

    tally_text = "\n".join(
        [f"kept    {n:>7}  {k}" for k, n in sorted(tally.kept.items())]
        + [f"skipped {n:>7}  {k}" for k, n in sorted(tally.skipped.items())]
    )
    info = {
        "poetry": corpus_stats(poetry_docs),
        "lo": corpus_stats(lo_docs),
        "per_source": Counter(d["source"] for d in poetry_docs + lo_docs),
        "per_source_chars": sum((Counter({d["source"]: len(d["text"])}) for d in poetry_docs + lo_docs), Counter()),
        "weights": ", ".join(f"{c.name} {c.weight:.0%}" for c in COLLECTIONS if c.sampled),
        "licenses": licenses,
        "poetry_version": poetry_version(args.poetry_dir),
        "lo_version": lo_version(lo_doc),
        "opencc_version": opencc_version(),
        "argv": " ".join(["scripts/build_corpus.py", *(argv if argv is not None else sys.argv[1:])]),
        "seed": args.seed,
        "max_poetry_mb": args.max_poetry_mb,
        "boilerplate_pages": args.boilerplate_pages,
        "lo_doc_chars": args.lo_doc_chars,
        "lo_min_doc_chars": args.lo_min_doc_chars,
        "lo_chars": args.lo_sentence_chars,
        "lo_min_chars": args.lo_min_sentence_chars,
        "lo_min_per_label": args.lo_min_per_label,
        "dev_fraction": args.dev_fraction,
        "lo_dev_cap": args.lo_dev_per_label,
        "lo_train_cap": args.lo_train_per_label,
        "poem_chars": args.poem_sentence_chars,
        "poem_dev_cap": args.poem_dev_per_label,
        "poem_train_cap": args.poem_train_per_label,
        "lo_table": label_table(t_train, t_dev, t_labels, t_available),
        "poem_table": label_table(g_train, g_dev, g_labels, g_available),
        "max_lo_mb": args.max_lo_mb,
        "lo_left_out": ", ".join(
            f"`{m}`, where only {translated_share(tally, m):.0%} of the paragraphs hold Chinese"
            for m, name in LO_MODULE_NAMES.items()
            if name not in {x["label_desc"] for x in t_labels}
        )
        or "none",
        "lo_capped": tally.skipped["lo: document over the size cap"],
        "lo_const": dev_majority_of_train(t_train, t_dev),
        "poem_const": dev_majority_of_train(g_train, g_dev),
        "tally": tally_text,
        "total_mb": 0.0,
    }
    write_readme(out, info)
    info["total_mb"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    write_readme(out, info)  # again, now that the total size is known (the README's own size barely changes)

    print(tally_text)
    print(f"poetry.jsonl: {info['poetry']}; libreoffice_help.jsonl: {info['lo']}")
    print("lo_topic:\n" + info["lo_table"] + f"\nconstant baseline on dev: {info['lo_const']:.1%}")
    print("poem_genre:\n" + info["poem_table"] + f"\nconstant baseline on dev: {info['poem_const']:.1%}")
    print(f"total size of {out}: {info['total_mb']:.2f} MB")


if __name__ == "__main__":
    main()
