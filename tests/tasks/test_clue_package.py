"""``lmforge evaluate clue --split test --package true``: one zip with every run's prediction file, named as CLUE's
leaderboard expects, each member byte-identical to the run's own ``{task}_predict.json`` (one line per test line)."""

from __future__ import annotations

import json
import zipfile

import pytest
from task_data import NEGATIVE, POSITIVE, synthetic_rows, write_rows

from lmforge.cli import run
from lmforge.commands.evaluate_clue import leaderboard_name
from lmforge.tasks.clue import TNEWS_LABELS
from lmforge.tasks.finetune import FinetuneArgs, finetune

TNEWS = {"pos": "100", "neg": "101"}  # the synthetic labels as TNEWS ids


def _tnews(path, n, seed, *, labelled=True):
    rows = [{"id": r["id"], "sentence": r["sentence"]} | ({"label": TNEWS[r["label"]]} if labelled else {})
            for r in synthetic_rows(n, seed=seed)]  # fmt: skip
    return write_rows(path, rows)


def _afqmc(path, n, seed, *, labelled=True):
    rows = []
    for r in synthetic_rows(n, seed=seed):  # "1": both sentences from the same pool
        other = r["sentence"][::-1] if seed % 2 else (NEGATIVE if r["label"] == "pos" else POSITIVE)[:5]
        row = {"id": r["id"], "sentence1": r["sentence"], "sentence2": other}
        rows.append(row | ({"label": "1" if other == r["sentence"][::-1] else "0"} if labelled else {}))
    return write_rows(path, rows)


@pytest.fixture()
def two_runs(char_tokenizer_dir, tmp_path):
    runs = {}
    for task, write in (("tnews", _tnews), ("afqmc", _afqmc)):
        data = tmp_path / f"{task}_public"
        write(data / "train.json", 24, 1)
        write(data / "dev.json", 8, 2)
        write(data / "test.json", 7 if task == "tnews" else 5, 3, labelled=False)
        if task == "tnews":
            labels = [{"label": label, "label_desc": f"news_{label}"} for label in TNEWS_LABELS]  # CLUE's file
            write_rows(data / "labels.json", labels)
        args = FinetuneArgs(task, model="bert", tokenizer_dir=str(char_tokenizer_dir), data_dir=str(data),
                            output_dir=str(tmp_path / "runs" / task), max_steps=2, max_seq_length=16,
                            disable_tqdm=True)  # fmt: skip
        finetune(args)
        runs[task] = tmp_path / "runs" / task
    return runs


def test_package_zips_every_run_under_clue_names(two_runs, tmp_path, capsys):
    tnews, afqmc = two_runs["tnews"], two_runs["afqmc"]
    result = run(["evaluate", "clue", "--model", str(tnews), str(afqmc), "--split", "test", "--package", "true",
                  "--output_dir", str(tmp_path / "submit")])  # fmt: skip
    package = tmp_path / "submit" / "clue_submit.zip"
    assert result["package"] == str(package) and "tnews11_predict.json" in capsys.readouterr().out
    with zipfile.ZipFile(package) as archive:
        assert sorted(archive.namelist()) == ["afqmc_predict.json", "tnews11_predict.json"]
        members = {name: archive.read(name).decode("utf-8") for name in archive.namelist()}
    for task, name, n_test in (("tnews", "tnews11_predict.json", 7), ("afqmc", "afqmc_predict.json", 5)):
        # the same file fine-tuning wrote for the run, and CLUE's format: one {"id", "label"} per test line, in order
        assert members[name] == (two_runs[task] / f"{task}_predict.json").read_text(encoding="utf-8")
        lines = [json.loads(line) for line in members[name].splitlines()]
        assert [r["id"] for r in lines] == list(range(n_test))
        assert all(r["label"] in (TNEWS_LABELS if task == "tnews" else ("0", "1")) for r in lines)
    assert all(
        r["label_desc"] == f"news_{r['label']}" for r in map(json.loads, members["tnews11_predict.json"].splitlines())
    )

    # a directory of runs is the same package; CLUE 1.0 names; two runs of one task are refused
    run(["evaluate", "clue", "--model", str(tnews.parent), "--split", "test", "--package", "true",
         "--clue_version", "1.0", "--output_dir", str(tmp_path / "v10")])  # fmt: skip
    with zipfile.ZipFile(tmp_path / "v10" / "clue_submit.zip") as archive:
        assert sorted(archive.namelist()) == ["afqmc_predict.json", "tnews10_predict.json"]
    with pytest.raises(SystemExit):
        run(["evaluate", "clue", "--model", str(tnews), str(tnews), "--split", "test", "--package", "true",
             "--output_dir", str(tmp_path / "twice")])  # fmt: skip
    assert "two runs of tnews" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["evaluate", "clue", "--model", str(tnews), "--package", "true"])
    assert "pass --split test" in capsys.readouterr().err


def test_leaderboard_names():
    assert leaderboard_name("ocnli") == "ocnli_50k_predict.json"
    assert leaderboard_name("cluewsc2020") == "cluewsc11_predict.json"
    assert leaderboard_name("c3", clue_version="1.0") == "c310_predict.json"
    assert leaderboard_name("cmrc2018") == "cmrc2018_predict.json"
    with pytest.raises(ValueError, match="not a CLUE leaderboard task"):
        leaderboard_name("classification")
