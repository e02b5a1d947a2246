"""``load_tokenizer``: a tokenizer directory back into an ``LMTokenizer``. ``lmforge_tokenizer.json`` is untrusted
input: unknown fields, wrong JSON types and a fingerprint that does not match the files are ``ValueError``; a
directory without it is imported as a Hugging Face tokenizer (``tokenizer_import.py``). ``LMTokenizer.save``
(``lm_tokenizer.py``) writes what this reads; every name here stays importable from ``lm_tokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.data.tokenizer_spec import IMPORTED_KINDS, KINDS, META_FILE

if TYPE_CHECKING:
    from lmforge.data.lm_tokenizer import LMTokenizer

# The fields of lmforge_tokenizer.json and their JSON types: the file is untrusted input, anything else is rejected.
_META_TYPES: dict[str, type] = {
    "format": str,
    "version": int,
    "kind": str,
    "fingerprint": str,
    "vocab_size": int,
    "special_tokens": dict,
    "special_token_ids": dict,
    "options": dict,
}


def read_json_object(path: Path) -> dict:
    """The JSON object in ``path`` ({} when there is no such file); anything else is a one-line ``ValueError``."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid UTF-8 JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def _read_meta(meta_path: Path) -> dict:
    meta = read_json_object(meta_path)
    unknown = sorted(set(meta) - set(_META_TYPES))
    if unknown:
        raise ValueError(f"{meta_path} has unexpected fields {unknown}; expected only {sorted(_META_TYPES)}")
    for key, value in meta.items():
        expected = _META_TYPES[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"{meta_path}: {key!r} must be a JSON {expected.__name__}, got {value!r}")
    for key in ("special_tokens", "special_token_ids"):
        wanted = str if key == "special_tokens" else int
        for name, value in meta.get(key, {}).items():
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise ValueError(f"{meta_path}: {key}[{name!r}] must be a {wanted.__name__}, got {value!r}")
    return meta


def load_tokenizer(path: str | Path) -> LMTokenizer:
    """Load a tokenizer directory written by ``LMTokenizer.save`` (``prepare tokenizer``) or a Hugging Face tokenizer
    directory (``tokenizer.json``, ``vocab.txt``, ``vocab.json`` + ``merges.txt`` or a sentencepiece ``.model``;
    ``tokenizer_import.py``)."""
    from lmforge.data.lm_tokenizer import LMTokenizer  # not at top: lm_tokenizer re-exports this module's names
    from lmforge.data.tokenizer_import import detect_format, import_tokenizer

    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        if (path / "tokenizer" / META_FILE).is_file():
            hint = f"did you mean {path / 'tokenizer'}?"
            raise ValueError(f"no tokenizer at {str(path)!r}: {META_FILE} is missing; {hint}")
        if path.is_dir() and detect_format(path) is not None:
            return import_tokenizer(path)
        raise ValueError(
            f"no tokenizer at {str(path)!r}: {META_FILE} is missing and it is no Hugging Face tokenizer directory "
            "either (tokenizer.json, vocab.txt, vocab.json + merges.txt or a sentencepiece .model)"
        )
    meta = _read_meta(meta_path)
    kind = meta.get("kind")
    if kind not in KINDS + IMPORTED_KINDS:
        raise ValueError(f"{meta_path}: unknown tokenizer kind {kind!r}")
    if kind in IMPORTED_KINDS:
        tokenizer = import_tokenizer(path, file_format=meta.get("options", {}).get("format"))
        _check_fingerprint(tokenizer, meta, path)
        return tokenizer
    backend = None
    if kind != "codepoint":
        from tokenizers import Tokenizer

        try:
            backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as error:  # the Rust library raises a bare Exception for unreadable/invalid files
            raise ValueError(f"cannot read {path / 'tokenizer.json'}: {error}") from None
    tokenizer = LMTokenizer(
        kind, backend=backend, special_tokens=meta.get("special_tokens"), options=meta.get("options")
    )
    _check_fingerprint(tokenizer, meta, path)
    return tokenizer


def _check_fingerprint(tokenizer: LMTokenizer, meta: dict, path: Path) -> None:
    if meta.get("fingerprint") != tokenizer.fingerprint:
        raise ValueError(
            f"tokenizer at {str(path)!r} was modified after it was built: fingerprint {tokenizer.fingerprint} "
            f"!= {meta.get('fingerprint')} recorded in {META_FILE}; rebuild it with 'lmforge prepare tokenizer'"
        )
