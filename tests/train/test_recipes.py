"""The shipped recipes (``configs/recipes/*.yaml``, issue 16): each one parses, validates, names only real fields,
and runs a few steps through ``lmforge pretrain`` on a tiny slice of the bundled corpus prepared the way its header
says (MLM char shards, CLM BPE shards, CANINE codepoint shards). Their figures come from the benchmarks, not here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from lmforge import cli
from lmforge.data.prepare import PrepareAllArgs, prepare_all
from lmforge.models.registry import list_models
from lmforge.train.config import PretrainArgs

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "configs" / "recipes").glob("*.yaml"))


def test_every_architecture_has_a_recipe_and_the_index_lists_them() -> None:
    names = {p.stem for p in RECIPES}
    models = {yaml.safe_load(p.read_text())["model"] for p in RECIPES}
    assert models == set(list_models()) - {"reformer"}, "one recipe per architecture that pretrains on a CPU budget"
    index = (ROOT / "configs" / "recipes" / "README.md").read_text()
    assert {n for n in re.findall(r"\[`([\w-]+)\.yaml`\]", index)} == names


def _prepared(tmp_path_factory: pytest.TempPathFactory, kind: str) -> Path:
    lines = (ROOT / "data" / "corpus" / "poetry.jsonl").read_text(encoding="utf-8").splitlines()[:60]
    source = tmp_path_factory.mktemp(f"corpus-{kind}") / "slice.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = source.parent / "data"
    options = {
        "mlm": dict(cjk_continuations=False),
        "clm": dict(objective="clm", tokenizer="bpe", vocab_size=300, segmenter="none", block_size=32),
        "chars": dict(tokenizer="codepoint"),
    }[kind]
    prepare_all(PrepareAllArgs(input=[str(source)], output_dir=str(out), max_seq_length=32, progress=False,
                               validation_split_percentage=10.0, **options))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {kind: _prepared(tmp_path_factory, kind) for kind in ("mlm", "clm", "chars")}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_states_its_budget_and_runs_a_few_steps(recipe: Path, prepared, tmp_path: Path, capsys) -> None:
    text = recipe.read_text()
    values = yaml.safe_load(text)
    assert set(values) <= set(PretrainArgs.__dataclass_fields__)
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for what in ("Budget:", "Data:", "Run:", "Outcome:"):
        assert what in header, f"{recipe.name} does not state its {what}"
    assert f"configs/recipes/{recipe.name}" in header
    kind = "clm" if values["objective"] == "clm" else "chars" if values["model"] == "canine" else "mlm"
    out = tmp_path / "run"
    small = "--max_steps 2 --per_device_train_batch_size 2 --max_seq_length 32 --logging_steps 1 --eval_steps 2 "
    small += "--save_steps 2 --max_eval_samples 4 --disable_tqdm true"
    cli.main(["pretrain", "--config", str(recipe), "--train_dir", str(prepared[kind]), "--output_dir", str(out),
              *small.split()])  # fmt: skip
    capsys.readouterr()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert len(losses) == 2 and all(loss == loss and loss > 0 for loss in losses)
    config = json.loads((out / "checkpoint-2" / "config.json").read_text())
    assert config["model"] == values["model"]
    for key, value in (values.get("model_overrides") or {}).items():
        assert config["config"][key] == value, (recipe.name, key)
