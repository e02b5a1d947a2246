"""Fixtures for the data-pipeline tests: a tiny generated corpus, a char tokenizer built from it, and prepared
shards. The bundled corpus (``data/corpus``) is used where present; everything else is generated in tmp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import make_documents, write_jsonl


@pytest.fixture(scope="session")
def documents() -> list[str]:
    return make_documents(300)


@pytest.fixture(scope="session")
def char_tokenizer(documents):
    from lmforge.data.tokenizer import build_char_tokenizer

    return build_char_tokenizer(documents, vocab_size=2000, min_frequency=1)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, documents) -> Path:
    """``prepare all`` (MLM, char, rjieba) on the generated documents; returns the output directory."""
    from lmforge.data.prepare import PrepareAllArgs, prepare_all

    root = tmp_path_factory.mktemp("prepared")
    write_jsonl(root / "raw" / "docs.jsonl", documents)
    return prepare_all(
        PrepareAllArgs(
            input=[str(root / "raw")],
            output_dir=str(root / "out"),
            max_seq_length=32,
            min_doc_length=1,
            validation_split_percentage=10.0,
            progress=False,
        )
    )
