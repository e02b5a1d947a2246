"""Self-contained exports: the bundler (``lmforge.hf.remote``) on toy packages and on the real architectures, and
exports of every architecture family reloaded with ``trust_remote_code=True`` in a process where ``import lmforge``
fails, to our logits; ``pipeline("fill-mask")`` and ``pipeline("text-classification")`` on them too."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_export_tasks import LABELS, tiny_checkpoint

from lmforge.hf.export import comparable_logits, export_checkpoint, probe_inputs
from lmforge.hf.remote import bundle, configuration_source, modeling_source

pytestmark = pytest.mark.hf


def _package(root: Path, name: str, files: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("from __future__ import annotations\n")
    importlib.invalidate_caches()
    for module, text in files.items():
        (root / name / f"{module}.py").write_text("from __future__ import annotations\n\n" + textwrap.dedent(text))


def test_bundler_keeps_what_is_needed_in_dependency_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "toy_keep", {
        "a": '''
            import math

            UNUSED = "never bundled"


            def helper(x):  # a comment that travels with it
                return math.sqrt(x) + _offset()


            def _offset():
                return 1.0
            ''',
        "b": '''
            from toy_keep.a import helper as root_of

            TABLE = {}
            __all__ = ["Thing"]


            class Thing:
                def value(self):
                    return root_of(4.0)


            TABLE["thing"] = Thing
            ''',
    })  # fmt: skip
    text, _ = bundle([("toy_keep.b", "TABLE")], provided={}, package="toy_keep")
    assert "UNUSED" not in text and "__all__" not in text and "import toy_keep" not in text
    assert text.index("def helper") < text.index("root_of = helper") < text.index("class Thing")
    assert "# a comment that travels with it" in text and 'TABLE["thing"] = Thing' in text
    namespace: dict = {}
    exec(compile("from __future__ import annotations\n" + text, "bundle", "exec"), namespace)
    assert namespace["TABLE"]["thing"]().value() == 3.0
    assert bundle([("toy_keep.b", "TABLE")], provided={}, package="toy_keep")[0] == text  # deterministic


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {
                "a": "_SMALL = 1\ndef f():\n    return _SMALL\n",
                "b": "_SMALL = 2\ndef g():\n    return _SMALL\n",
                "c": "from toy_bad.a import f\nfrom toy_bad.b import g\nBOTH = (f, g)\n",
            },
            "_SMALL",
        ),
        (
            {
                "a": "from math import pi, tau\ndef f():\n    return pi\n",
                "b": "tau = 1\ndef g():\n    return tau\n",
                "c": "from toy_bad.a import f\nfrom toy_bad.b import g\nBOTH = (f, g)\n",
            },
            "tau",
        ),  # bound on the way
        ({"a": "def len(x):\n    return 0\n", "c": "from toy_bad.a import len\nBOTH = len\n"}, "shadow builtins"),
        ({"c": "def BOTH():\n    from toy_bad.a import f\n    return f\n", "a": "f = 1\n"}, "below the top level"),
        ({"c": "from toy_bad.a import *\nBOTH = 1\n", "a": "f = 1\n"}, "import \\*"),
        ({"c": "import toy_bad.a\nBOTH = 1\n", "a": "f = 1\n"}, "import its names"),
        ({"c": "from toy_bad import a\nBOTH = a\n", "a": "f = 1\n"}, "imports a module"),
    ],
)
def test_bundler_fails_loudly(files, message, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_bad", raising=False)
    _package(tmp_path, "toy_bad", files)
    with pytest.raises(ValueError, match=message):
        bundle([("toy_bad.c", "BOTH")], provided={}, package="toy_bad")


def test_bundler_refuses_a_module_without_the_future_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "toy_old").mkdir()
    (tmp_path / "toy_old" / "__init__.py").write_text("")
    (tmp_path / "toy_old" / "a.py").write_text("X: int = 1\n")
    with pytest.raises(ValueError, match="from __future__ import annotations"):
        bundle([("toy_old.a", "X")], provided={}, package="toy_old")


@pytest.mark.parametrize("arch", ["bert", "gpt", "canine", "reformer", "gau-alpha", "flash-quad", "flash"])
def test_real_bundles_are_self_contained_and_deterministic(arch: str) -> None:
    text = modeling_source(arch, ["mlm" if arch != "gpt" else "clm", "span", "backbone"])
    assert text == modeling_source(arch, ["mlm" if arch != "gpt" else "clm", "span", "backbone"])
    assert not re.search(r"^\s*(from|import) lmforge", text, flags=re.M)
    assert text.count("from __future__ import annotations") == 1 and text.count("\n__all__ = ") == 1
    assert "from .configuration_lmforge import LmforgeConfig, config_class_for" in text
    compile(text, "modeling_lmforge.py", "exec")
    compile(configuration_source(arch), "configuration_lmforge.py", "exec")
    if arch == "canine":  # BERT's layer only: not BERT's presets or builders, which clash with CANINE's
        assert "class BertLayer" in text and "_SMALL" not in text and "def build_clm" not in text


# One child process for every family: each export is loaded with trust_remote_code where lmforge cannot be imported.
CHILD = """
import json, sys
sys.modules["lmforge"] = None  # installed in this environment, but this process must not see it
try:
    import lmforge
except ImportError:
    pass
else:
    raise SystemExit("lmforge is importable")
import torch, transformers
from safetensors.torch import load_file, save_file
jobs, report = json.load(open("jobs.json")), {}
for name, job in jobs.items():
    model = getattr(transformers, job["auto"]).from_pretrained(job["dir"], trust_remote_code=True).eval()
    inputs = load_file(job["inputs"])
    with torch.no_grad():
        out = model(**inputs)
    span = job["auto"].endswith("QuestionAnswering")
    logits = torch.stack([out.start_logits, out.end_logits], -1) if span else out.logits
    save_file({"logits": logits.contiguous()}, f"{name}.out.safetensors")
    report[name] = {"module": type(model).__module__, "class": type(model).__name__}
fill = transformers.pipeline("fill-mask", model=jobs["gau-alpha-mlm"]["dir"], trust_remote_code=True, top_k=3)
report["fill-mask"] = fill("天气[MASK]好")
classify = transformers.pipeline("text-classification", model=jobs["flash-seq"]["dir"], trust_remote_code=True)
report["text-classification"] = classify("天气很好")
json.dump(report, open("report.json", "w"), ensure_ascii=False)
"""
# name -> (arch, preset, task, Auto class, extra tiny_checkpoint arguments)
JOBS = {
    "gau-alpha-mlm": ("gau-alpha", "tiny", "lm", "AutoModelForMaskedLM", {}),
    "gau-alpha-span": ("gau-alpha", "tiny", "span", "AutoModelForQuestionAnswering", {}),
    "flash-quad-clm": ("flash-quad", "tiny", "lm", "AutoModelForCausalLM", {"lm": "clm"}),
    "flash-seq": ("flash", "tiny", "sequence_classification", "AutoModelForSequenceClassification", {}),
    "flash-tokens": ("flash", "tiny", "token_classification", "AutoModelForTokenClassification", {}),
    "canine-mlm": ("canine", "tiny", "lm", "AutoModelForMaskedLM", {}),
    "bert-mean": ("bert", "tiny", "sequence_classification", "AutoModelForSequenceClassification",
                  {"pooling": "mean"}),
    "reformer-tokens": ("reformer", "tiny", "token_classification", "AutoModelForTokenClassification", {}),
    "gpt-modern-clm": ("gpt", "tiny-modern", "lm", "AutoModelForCausalLM", {}),
}  # fmt: skip


def test_remote_code_loads_without_lmforge(mlm_run: Path, tmp_path: Path) -> None:
    tokenizer = next(mlm_run.glob("checkpoint-*")) / "tokenizer"
    vocab_size = json.loads((next(mlm_run.glob("checkpoint-*")) / "config.json").read_text())["config"]["vocab_size"]
    jobs, expected = {}, {}
    for name, (arch, preset, task, auto, extra) in JOBS.items():
        with_tokenizer = {"tokenizer_dir": tokenizer, "overrides": {"vocab_size": vocab_size}}
        extra = extra | (with_tokenizer if name in ("gau-alpha-mlm", "flash-seq") else {})
        checkpoint, ours = tiny_checkpoint(tmp_path / name, arch, preset, task, **extra)
        out = export_checkpoint(checkpoint, tmp_path / "exports" / name)
        assert "auto_map" in json.loads((out / "config.json").read_text()), name
        inputs = probe_inputs(ours.config)
        save_file(inputs, tmp_path / f"{name}.in.safetensors")
        with torch.no_grad():
            expected[name] = comparable_logits(ours(**inputs), inputs["attention_mask"])
        jobs[name] = {"dir": str(out), "auto": auto, "inputs": str(tmp_path / f"{name}.in.safetensors")}
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    env = os.environ | {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    for name in JOBS:
        assert report[name]["module"].startswith("transformers_modules"), report[name]
        theirs = load_file(tmp_path / f"{name}.out.safetensors")["logits"]
        keep = load_file(tmp_path / f"{name}.in.safetensors")["attention_mask"].bool()
        theirs = theirs[keep] if theirs.dim() == 3 else theirs
        torch.testing.assert_close(theirs, expected[name], rtol=1e-5, atol=1e-5, msg=name)
    assert len(report["fill-mask"]) == 3 and all(0.0 <= p["score"] <= 1.0 for p in report["fill-mask"])
    assert report["text-classification"][0]["label"] in LABELS
