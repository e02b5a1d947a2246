"""``--source_weights`` (issue 19 item 3): the output mixes the ``--input`` sources in exactly the given proportions
of documents, by seeded down-sampling; the documents left out are counted (``documents_left_out``, per source in
``report["source_weights"]``), never as skipped, and the manifest records the weights and the realised shares."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_jsonl
from hypothesis import given
from hypothesis import strategies as st

from lmforge.data.corpus import IngestOptions, PrepareError, ingest
from lmforge.data.prepare import CorpusArgs, PrepareAllArgs, prepare_all, prepare_corpus
from lmforge.data.weights import apportion, parse_source_weights, source_key


def docs(tag: str, count: int) -> list[str]:
    return [f"{tag}来源的第{i}篇文档，内容各不相同。" for i in range(count)]


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "corpusA" / "one.jsonl", docs("甲", 60))
    write_jsonl(tmp_path / "corpusA" / "two.jsonl", [*docs("甲", 60)[:5], *docs("甲", 100)[60:]])  # 5 duplicates
    write_jsonl(tmp_path / "corpusB.jsonl", [*docs("乙", 30), "短"])  # one too short
    return tmp_path


def run(raw: Path, out: Path, weights: str | None, **kwargs) -> tuple[dict, list[dict]]:
    inputs = [str(raw / "corpusA"), str(raw / "corpusB.jsonl")]
    options = IngestOptions(min_doc_length=5)
    report = ingest(inputs, out, options=options, source_weights=weights, progress=False, **kwargs)
    records = [json.loads(line) for part in report["outputs"] for line in (out / part).open("rb")]
    assert report["documents_out"] == len(records)
    assert report["documents_in"] == (
        report["documents_out"]
        + sum(report["skipped"].values())
        + report["documents_lost"]
        + report["documents_left_out"]
    )
    return report, records


def by_source(records: list[dict]) -> dict[str, int]:
    return {tag: sum(r["text"].startswith(tag) for r in records) for tag in ("甲", "乙")}


def test_exact_proportions_by_down_sampling(raw: Path, tmp_path: Path) -> None:
    report, records = run(raw, tmp_path / "out", "corpusA=0.7,corpusB=0.3")
    # after filters and de-duplication A has 100 documents, B 30: B sets the size, N = 30 / 0.3 = 100
    assert by_source(records) == {"甲": 70, "乙": 30}
    assert len({r["text"] for r in records}) == 100 and {r["text"] for r in records} <= set(
        docs("甲", 100) + docs("乙", 30)
    )
    mix = report["source_weights"]
    assert mix["available"] == {"corpusA": 100, "corpusB": 30} and mix["kept"] == {"corpusA": 70, "corpusB": 30}
    assert mix["left_out"] == {"corpusA": 30, "corpusB": 0} and report["documents_left_out"] == 30
    assert mix["realised"] == {"corpusA": 0.7, "corpusB": 0.3} and mix["weights"] == mix["realised"]
    assert report["skipped"] == {"duplicate": 5, "too_short": 1}  # left-out documents are not "skipped"
    assert len(report["examples"]["left_out_by_source_weights"]) == 5
    assert report["settings"]["source_weights"] == "corpusA=0.7,corpusB=0.3"
    assert report["chars_out"] == sum(len(r["text"]) for r in records)
    counts = np.load(tmp_path / "out" / "codepoint_counts.npy")  # the histogram of what is in the output
    expected = np.bincount([ord(c) for r in records for c in r["text"]])
    assert dict(zip(counts[:, 0].tolist(), counts[:, 1].tolist())) == {i: int(n) for i, n in enumerate(expected) if n}
    # relative weights, and the other side running short: B = 30 can give 0.5 * N for N = 60, A gives 30 of 100
    report, records = run(raw, tmp_path / "even", "corpusB=1,corpusA=1")
    assert by_source(records) == {"甲": 30, "乙": 30} and report["documents_left_out"] == 70


def test_deterministic_with_the_seed_and_num_proc(raw: Path, tmp_path: Path) -> None:
    first, a = run(raw, tmp_path / "a", "corpusA=0.7,corpusB=0.3", seed=1)
    again, b = run(raw, tmp_path / "b", "corpusA=0.7,corpusB=0.3", seed=1, num_proc=2)
    _, c = run(raw, tmp_path / "c", "corpusA=0.7,corpusB=0.3", seed=2)
    assert a == b and first["source_weights"] == again["source_weights"]
    assert {r["text"] for r in a} != {r["text"] for r in c} and by_source(c) == by_source(a)
    # the kept documents keep the order ingest gave them: weighting only removes lines
    _, unweighted = run(raw, tmp_path / "d", None, seed=1)
    kept = {r["text"] for r in a}
    assert [r["text"] for r in unweighted if r["text"] in kept] == [r["text"] for r in a]


@given(
    weights=st.lists(st.integers(1, 20), min_size=1, max_size=5),
    available=st.lists(st.integers(1, 500), min_size=5, max_size=5),
)
def test_apportion_is_exact_up_to_rounding(weights: list[int], available: list[int]) -> None:
    total_weight = sum(weights)
    shares = {f"s{i}": Fraction(w, total_weight) for i, w in enumerate(weights)}
    have = {key: available[i] for i, key in enumerate(shares)}
    kept = apportion(shares, have)
    n = sum(kept.values())
    assert all(kept[k] <= have[k] and abs(kept[k] - shares[k] * n) < 1 for k in shares)
    assert any(shares[k] * (n + 1) > have[k] for k in shares)  # N is the largest that fits
    assert all(kept[k] == shares[k] * n for k in shares if (shares[k] * n).denominator == 1)


def test_weight_errors_are_one_line(raw: Path, tmp_path: Path) -> None:
    inputs = [str(raw / "corpusA"), str(raw / "corpusB.jsonl")]
    for value, message in [
        ("corpusA=0.7", "must name every --input by its key"),
        ("corpusA=0.7,corpusB=0.2,corpusC=0.1", "must name every --input"),
        ("corpusA:0.7,corpusB=0.3", "must look like 'name=0.7,other=0.3'"),
        ("corpusA=x,corpusB=0.3", "not a number"),
        ("corpusA=0,corpusB=1", "must be > 0"),
        ("corpusA=1,corpusA=1,corpusB=1", "names 'corpusA' twice"),
    ]:
        with pytest.raises(PrepareError, match=message) as caught:
            parse_source_weights(value, inputs)
        assert "\n" not in str(caught.value)
    write_jsonl(raw / "other" / "corpusB.jsonl", docs("丙", 3))
    with pytest.raises(PrepareError, match="several --input items have the key"):
        parse_source_weights("corpusA=1,corpusB=1", [*inputs, str(raw / "other" / "corpusB.jsonl")])
    assert source_key("data/c4.en.jsonl.gz") == "c4" and source_key(str(raw / "corpusA")) == "corpusA"
    assert parse_source_weights({"corpusA": 3, "corpusB": "1/3"}, inputs) == {
        "corpusA": Fraction(9, 10),
        "corpusB": Fraction(1, 10),
    }
    # a source with nothing left after ingest: an error, and no parts that look like a corpus
    write_jsonl(raw / "tiny.jsonl", ["短"])
    with pytest.raises(PrepareError, match=r"no documents left from \['tiny'\]"):
        ingest(
            [str(raw / "corpusB.jsonl"), str(raw / "tiny.jsonl")],
            tmp_path / "out",
            options=IngestOptions(min_doc_length=5),
            source_weights="corpusB=1,tiny=1",
            progress=False,
        )
    assert not list((tmp_path / "out").glob("part-*")) and not (tmp_path / "out" / "report.json").exists()


def test_console_and_manifest(raw: Path, tmp_path: Path, capsys) -> None:
    args = CorpusArgs(
        input=[str(raw / "corpusA"), str(raw / "corpusB.jsonl")],
        output_dir=str(tmp_path / "corpus"),
        source_weights="corpusA=7,corpusB=3",
        progress=False,
    )
    prepare_corpus(args)
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    assert "--source_weights kept corpusA 70/100 (70.0%), corpusB 30/30 (30.0%), 30 documents left out by it" in line
    out = prepare_all(
        PrepareAllArgs(
            input=[str(raw / "corpusA"), str(raw / "corpusB.jsonl")],
            output_dir=str(tmp_path / "all"),
            source_weights="corpusA=0.7,corpusB=0.3",
            validation_file=str(raw / "corpusB.jsonl"),  # read whole: the weights mix --input only
            segmenter="none",
            max_seq_length=64,
            progress=False,
        )
    )
    manifest = json.loads((out / "prepare.json").read_text(encoding="utf-8"))
    assert manifest["args"]["source_weights"] == "corpusA=0.7,corpusB=0.3"
    assert manifest["corpus"]["source_weights"]["realised"] == {"corpusA": 0.7, "corpusB": 0.3}
    assert manifest["validation_corpus"]["documents_left_out"] == 0
    with pytest.raises(PrepareError, match="a ref file needs every line"):
        prepare_all(
            PrepareAllArgs(
                input=[str(raw / "corpusB.jsonl")],
                output_dir=str(tmp_path / "ref"),
                source_weights="corpusB=1",
                write_ref_file=str(tmp_path / "ref.txt"),
                progress=False,
            )
        )
