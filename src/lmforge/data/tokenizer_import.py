"""Importing published tokenizers: a local Hugging Face tokenizer directory -> ``LMTokenizer``.

The first format present wins (``detect_format``):

1. ``tokenizer.json`` (any HF fast tokenizer): loaded by ``tokenizers`` as is. Kind ``hf_json``.
2. ``vocab.txt`` (BERT WordPiece, e.g. bert-base-chinese, junnyu/roformer_chinese_char_base): the pipeline
   transformers' ``BertTokenizer`` builds (BertNormalizer, BertPreTokenizer, WordPiece, unk ``[UNK]``), with
   ``do_lower_case``, ``tokenize_chinese_chars`` and ``strip_accents`` from ``tokenizer_config.json`` and
   ``BertTokenizer``'s defaults (True, True, None = follow lowercase). Kind ``wordpiece``.
3. ``vocab.json`` + ``merges.txt`` (GPT-2 byte-level BPE): the pipeline of ``GPT2Tokenizer`` (BPE without unk,
   ByteLevel with ``add_prefix_space`` from the config, default False). Kind ``byte_bpe``.
4. ``spiece.model``, else the only ``*.model`` (sentencepiece, e.g. the Reformer's): ``sentencepiece`` itself
   behind the small part of the ``tokenizers.Tokenizer`` interface ``LMTokenizer`` uses (``SentencePieceBackend``),
   because a conversion to ``tokenizers`` is exact only for some models (``sentencepiece_backend.py``). Kind
   ``sentencepiece``.

Special tokens keep their ids (BERT: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103). Their roles come from
``tokenizer_config.json``, then ``special_tokens_map.json``, then the defaults of the format's transformers class
(``BertTokenizer``, ``GPT2Tokenizer``; the sentencepiece model's own unk/bos/eos/pad; for ``tokenizer.json`` the
conventional spellings among its special added tokens). As in transformers, a named special missing from a
``tokenizers`` vocabulary is appended as a new id; ``added_tokens_decoder`` (and legacy ``added_tokens.json``)
entries are honoured for vocab.txt and vocab.json. No mask token: ``mask_token_id`` is None and only masked-LM
refuses the tokenizer. No pad token: padding uses unk, then eos (``LMTokenizer.pad_token_fallback``).

``LMTokenizer.save`` writes the original files byte for byte (a ``tokenizer_config.json`` naming a loadable
transformers class is added when the directory had none, or one without ``tokenizer_class``; a lone ``foo.model``
is saved as ``spiece.model`` for ``BertGenerationTokenizer``) plus ``lmforge_tokenizer.json`` pinning the format
and the fingerprint. Nothing is ever downloaded: ``resolve_tokenizer_name`` turns a hub id into a ``ValueError``.

Deviations: transformers classes that pre-process text on top of the files are read by their files only:
``RoFormerTokenizer``'s jieba word split (identical ids for a character vocabulary such as
roformer_chinese_char_base), ALBERT/XLNet lowercasing before sentencepiece. As everywhere in lmforge, raw text
spelling a special token is encoded as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lmforge.data.lm_tokenizer import LMTokenizer, read_json_object
from lmforge.data.sentencepiece_backend import SentencePieceBackend
from lmforge.data.sentencepiece_backend import SentencePieceEncoding as SentencePieceEncoding  # re-exported

ROLES: tuple[str, ...] = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")
FORMATS: dict[str, str] = {  # format -> LMTokenizer kind
    "tokenizer.json": "hf_json",
    "vocab.txt": "wordpiece",
    "vocab.json+merges.txt": "byte_bpe",
    "sentencepiece": "sentencepiece",
}
# Files copied into a saved tokenizer when the imported directory has them (the model file of sentencepiece too).
COPIED_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
BERT_DEFAULTS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
GPT2_DEFAULTS = {"unk": "<|endoftext|>", "bos": "<|endoftext|>", "eos": "<|endoftext|>"}
# tokenizer.json without a config naming roles: the usual spellings, looked for among its special added tokens.
CONVENTIONAL_SPELLINGS = {
    "pad": ("[PAD]", "<pad>", "<|pad|>"),
    "unk": ("[UNK]", "<unk>", "<|unk|>"),
    "cls": ("[CLS]", "<cls>"),
    "sep": ("[SEP]", "<sep>"),
    "mask": ("[MASK]", "<mask>", "<|mask|>"),
    "bos": ("<s>", "<bos>", "<|startoftext|>", "<|begin_of_text|>"),
    "eos": ("</s>", "<eos>", "<|endoftext|>", "<|end_of_text|>"),
}
# The transformers class named in a written tokenizer_config.json when the imported directory named none.
DEFAULT_CLASSES = {
    "tokenizer.json": "PreTrainedTokenizerFast",
    "vocab.txt": "BertTokenizer",
    "vocab.json+merges.txt": "GPT2Tokenizer",
    "sentencepiece": "BertGenerationTokenizer",
}
SENTENCEPIECE_FILE = "spiece.model"  # the name BertGenerationTokenizer (and T5, ALBERT, Reformer) look for


def resolve_tokenizer_name(name: str) -> Path:
    """``--tokenizer_name``: a local directory (relative paths such as ``org/model`` work), never a download."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"--tokenizer_name {name!r} is a file; pass the directory that holds the tokenizer files")
    raise ValueError(
        f"--tokenizer_name {name!r} is not a local directory and lmforge downloads nothing; download or clone it "
        f"first (huggingface-cli download {name} --local-dir DIR, or git clone https://huggingface.co/{name}) "
        "and pass the local path"
    )


def load_named_tokenizer(name: str) -> LMTokenizer:
    """``--tokenizer_name``: a local lmforge or Hugging Face tokenizer directory, loaded; a hub id is a ValueError."""
    from lmforge.data.lm_tokenizer import load_tokenizer

    return load_tokenizer(resolve_tokenizer_name(name))


def detect_format(directory: str | Path) -> str | None:
    """The first tokenizer format present in ``directory`` (see the module docstring), or None."""
    directory = Path(directory)
    if (directory / "tokenizer.json").is_file():
        return "tokenizer.json"
    if (directory / "vocab.txt").is_file():
        return "vocab.txt"
    if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return "vocab.json+merges.txt"
    if (directory / SENTENCEPIECE_FILE).is_file() or any(directory.glob("*.model")):
        return "sentencepiece"
    return None


def import_tokenizer(directory: str | Path, *, file_format: str | None = None) -> LMTokenizer:
    """An ``LMTokenizer`` from a Hugging Face tokenizer directory; ``file_format`` pins the format (saved copies)."""
    directory = Path(directory)
    found = detect_format(directory)
    file_format = file_format or found
    if file_format not in FORMATS:
        raise ValueError(
            f"no tokenizer files in {str(directory)!r}: expected tokenizer.json, vocab.txt, vocab.json + merges.txt "
            f"or a sentencepiece .model{'' if file_format is None else f' (unknown format {file_format!r})'}"
        )
    config = read_json_object(directory / "tokenizer_config.json")
    special_map = read_json_object(directory / "special_tokens_map.json")
    files = {name: (directory / name).read_bytes() for name in COPIED_FILES if (directory / name).is_file()}
    build = {
        "tokenizer.json": _from_tokenizer_json,
        "vocab.txt": _from_vocab_txt,
        "vocab.json+merges.txt": _from_gpt2_files,
        "sentencepiece": _from_sentencepiece,
    }[file_format]
    imported = build(directory, config, special_map, files)
    if config.get("tokenizer_class") is None:  # without it AutoTokenizer cannot pick a class (no config.json here)
        roles = {f"{role}_token": imported.roles.get(role) for role in ROLES}  # null: the class adds no default
        written = {**imported.config_defaults, **roles, **config, "tokenizer_class": DEFAULT_CLASSES[file_format]}
        files["tokenizer_config.json"] = (json.dumps(written, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    tokenizer = LMTokenizer(
        FORMATS[file_format],
        backend=imported.backend,
        special_tokens=imported.roles,
        options={"format": file_format},
        source=imported.source,
        files=files,
    )
    notes = []
    if tokenizer.pad_token_fallback is not None:
        notes.append(f"no pad token: pads with {tokenizer.pad_token_fallback}")
    if tokenizer.mask_token_id is None:
        notes.append("no mask token: causal LM only")
    tokenizer.source = "; ".join([imported.source, *notes])
    return tokenizer


# ---- the formats --------------------------------------------------------------------------------------------


@dataclass
class _Imported:
    backend: object
    roles: dict[str, str]
    source: str
    config_defaults: dict  # options of the format written into a generated tokenizer_config.json


def _from_tokenizer_json(directory: Path, config: dict, special_map: dict, files: dict) -> _Imported:
    backend = _read_tokenizers_file(directory / "tokenizer.json")
    special = {token.content for token in backend.get_added_tokens_decoder().values() if token.special}
    guessed = {}
    for role, spellings in CONVENTIONAL_SPELLINGS.items():
        guessed[role] = next((s for s in spellings if s in special), None)
    roles = _roles(config, special_map, guessed, directory)
    _add_specials(backend, [*roles.values(), *_additional(config, special_map, directory)])
    model = json.loads(backend.to_str())["model"].get("type", "?")
    named = config.get("tokenizer_class")
    named = f", {named}" if isinstance(named, str) and named != DEFAULT_CLASSES["tokenizer.json"] else ""
    return _Imported(backend, roles, f"tokenizer.json ({model}{named})", {})


def _from_vocab_txt(directory: Path, config: dict, special_map: dict, files: dict) -> _Imported:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab: dict[str, int] = {}
    try:
        with open(directory / "vocab.txt", encoding="utf-8") as handle:  # transformers' load_vocab, line for line
            for index, line in enumerate(handle.readlines()):
                vocab[line.rstrip("\n")] = index
    except UnicodeDecodeError as error:
        raise ValueError(f"{directory / 'vocab.txt'} is not valid UTF-8: {error}") from None
    lowercase = _option(config, "do_lower_case", True, directory)
    chinese_chars = _option(config, "tokenize_chinese_chars", True, directory)
    strip_accents = _option(config, "strip_accents", None, directory)
    roles = _roles(config, special_map, BERT_DEFAULTS, directory)
    unk = roles.get("unk")
    if unk is None or unk not in vocab:
        raise ValueError(f"{directory / 'vocab.txt'} has no unknown token {unk!r}, which WordPiece needs")
    backend = Tokenizer(models.WordPiece(vocab, unk_token=unk))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=chinese_chars, strip_accents=strip_accents, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    _add_listed_tokens(backend, config, directory)
    _add_specials(backend, [*roles.values(), *_additional(config, special_map, directory)])
    cls, sep = roles.get("cls"), roles.get("sep")
    if cls is not None and sep is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))],
        )
    details = ["lowercase" if lowercase else "cased"]
    if strip_accents is not None and strip_accents != lowercase:
        details.append("strip accents" if strip_accents else "keep accents")
    if not chinese_chars:
        details.append("Chinese characters not split")
    if config.get("tokenizer_class") not in (None, "BertTokenizer", "BertTokenizerFast"):
        details.append(f"{config['tokenizer_class']} read as BertTokenizer")
    options = {"do_lower_case": lowercase, "tokenize_chinese_chars": chinese_chars, "strip_accents": strip_accents}
    return _Imported(backend, roles, f"vocab.txt (WordPiece, {', '.join(details)})", options)


def _from_gpt2_files(directory: Path, config: dict, special_map: dict, files: dict) -> _Imported:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    try:
        vocab, merges = models.BPE.read_file(str(directory / "vocab.json"), str(directory / "merges.txt"))
        model = models.BPE(
            vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False
        )
    except Exception as error:  # the Rust library raises a bare Exception for unreadable/invalid files
        raise ValueError(f"cannot read {directory / 'vocab.json'} + merges.txt: {error}") from None
    add_prefix_space = _option(config, "add_prefix_space", False, directory)
    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)  # a token's span includes its leading space
    roles = _roles(config, special_map, GPT2_DEFAULTS, directory)
    _add_listed_tokens(backend, config, directory)
    _add_specials(backend, [*roles.values(), *_additional(config, special_map, directory)])
    source = "vocab.json + merges.txt (GPT-2 byte-level BPE" + (", prefix space)" if add_prefix_space else ")")
    return _Imported(backend, roles, source, {"add_prefix_space": add_prefix_space})


def _from_sentencepiece(directory: Path, config: dict, special_map: dict, files: dict) -> _Imported:
    path = directory / SENTENCEPIECE_FILE
    if not path.is_file():
        candidates = sorted(directory.glob("*.model"))
        if not candidates:
            raise ValueError(f"no sentencepiece model ({SENTENCEPIECE_FILE} or *.model) in {str(directory)!r}")
        if len(candidates) > 1:
            names = [p.name for p in candidates]
            raise ValueError(
                f"{str(directory)!r} holds several sentencepiece models {names}; keep one or name it "
                f"{SENTENCEPIECE_FILE}"
            )
        path = candidates[0]
    backend = SentencePieceBackend(path.read_bytes(), name=str(path))
    processor = backend.processor
    defaults = {"unk": processor.id_to_piece(processor.unk_id())}
    for role, index in (("bos", processor.bos_id()), ("eos", processor.eos_id()), ("pad", processor.pad_id())):
        if index >= 0:
            defaults[role] = processor.id_to_piece(index)
    roles = _roles(config, special_map, defaults, directory)
    extra = _additional(config, special_map, directory)
    for token in [*roles.values(), *extra]:
        if backend.token_to_id(token) is None:
            raise ValueError(
                f"special token {token!r} of {str(directory)!r} is not a piece of {path.name}; lmforge cannot add "
                "tokens to a sentencepiece model"
            )
    backend.extra_special_ids = frozenset(backend.token_to_id(token) for token in [*roles.values(), *extra])
    # Without a config of its own the model is saved as spiece.model, the file BertGenerationTokenizer reads.
    files[path.name if config.get("tokenizer_class") else SENTENCEPIECE_FILE] = backend.model_bytes
    named = config.get("tokenizer_class")
    details = [f"{named} read as plain sentencepiece"] if named not in (None, DEFAULT_CLASSES["sentencepiece"]) else []
    if config.get("do_lower_case") is True:
        details.append("do_lower_case ignored")
    return _Imported(backend, roles, "sentencepiece model" + (f" ({', '.join(details)})" if details else ""), {})


# ---- special tokens -----------------------------------------------------------------------------------------


def _token_content(value, where: str) -> str | None:
    """A special token as written by transformers: a string, an AddedToken dict (``content``) or null."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"{where}: a special token must be a string or an object with 'content', got {value!r}")


def _roles(config: dict, special_map: dict, defaults: dict, directory: Path) -> dict[str, str]:
    roles = {}
    for role in ROLES:
        key = f"{role}_token"
        if key in config:
            value, where = config[key], "tokenizer_config.json"
        elif key in special_map:
            value, where = special_map[key], "special_tokens_map.json"
        else:
            value, where = defaults.get(role), "defaults"
        token = _token_content(value, f"{directory / where} {key}")
        if token is not None:
            roles[role] = token
    return roles


def _additional(config: dict, special_map: dict, directory: Path) -> list[str]:
    """``additional_special_tokens`` (transformers 4) and ``extra_special_tokens`` (5: a list, or in late 4.x a dict
    of named tokens such as ``image_token``)."""
    tokens = []
    for key in ("additional_special_tokens", "extra_special_tokens"):
        values = config.get(key, special_map.get(key)) or []
        values = list(values.values()) if isinstance(values, dict) else values
        if not isinstance(values, list):
            raise ValueError(f"{directory}: {key} must be a list, got {values!r}")
        tokens += [t for t in (_token_content(v, f"{directory} {key}") for v in values) if t]
    return tokens


def _add_specials(backend, tokens: list[str]) -> None:
    """Mark ``tokens`` special (transformers appends those missing from the vocabulary as new ids)."""
    from tokenizers import AddedToken

    marked = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
    for token in dict.fromkeys(tokens):
        if token not in marked:
            backend.add_special_tokens([AddedToken(token, special=True, normalized=False)])


def _add_listed_tokens(backend, config: dict, directory: Path) -> None:
    """``added_tokens_decoder`` of tokenizer_config.json and legacy added_tokens.json: tokens beyond the vocabulary
    file (appended in id order, at the id they name) and vocabulary entries marked special."""
    from tokenizers import AddedToken

    entries = []
    decoder = config.get("added_tokens_decoder") or {}
    if not isinstance(decoder, dict):
        raise ValueError(f"{directory}/tokenizer_config.json: added_tokens_decoder must be an object")
    for index, entry in decoder.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("content"), str) and str(index).isdigit()):
            raise ValueError(f"{directory}/tokenizer_config.json: bad added_tokens_decoder entry {index!r}: {entry!r}")
        entries.append((int(index), entry))
    legacy = read_json_object(directory / "added_tokens.json")
    for content, index in legacy.items():
        if not isinstance(index, int):
            raise ValueError(f"{directory}/added_tokens.json: the id of {content!r} must be an int, got {index!r}")
        if all(entry["content"] != content for _, entry in entries):
            entries.append((index, {"content": content, "special": False}))
    for index, entry in sorted(entries, key=lambda pair: pair[0]):
        content, special = entry["content"], bool(entry.get("special", False))
        options = {k: bool(entry[k]) for k in ("lstrip", "rstrip", "single_word", "normalized") if k in entry}
        existing = backend.token_to_id(content)
        if existing is not None and not special:
            continue
        token = AddedToken(content, special=special, **options)
        (backend.add_special_tokens if special else backend.add_tokens)([token])
        if backend.token_to_id(content) != index:
            raise ValueError(
                f"{directory}: added token {content!r} is listed with id {index} but gets "
                f"{backend.token_to_id(content)} (ids of added tokens must follow the vocabulary without gaps)"
            )


# ---- helpers ------------------------------------------------------------------------------------------------


def _option(config: dict, key: str, default, directory: Path):
    value = config.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{directory / 'tokenizer_config.json'}: {key} must be true, false or null, got {value!r}")
    return value


def _read_tokenizers_file(path: Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust library raises a bare Exception for unreadable/invalid files
        raise ValueError(f"cannot read {path}: {error}") from None
