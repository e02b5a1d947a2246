"""Building tokenizers from a corpus: ``char`` (a BERT vocabulary of characters), ``bpe`` (byte-level BPE) and
``codepoint`` (nothing to learn).

* ``char``: a BERT ``vocab.txt`` of single characters chosen by frequency plus ``##X`` continuation entries
  (bert-base-chinese layout, so PaddleNLP-style whole-word marks ``北 ##京`` are representable and WordPiece can
  spell any Latin word of known letters). The ``tokenizers`` pipeline is BERT's (BertNormalizer, BertPreTokenizer,
  WordPiece). Counting is one ``np.bincount`` over codepoints (or the histogram ``prepare corpus`` saved); each
  distinct codepoint is then normalised once.
* ``bpe``: byte-level BPE trained with ``tokenizers``. Chinese has no spaces, so GPT-2's pre-split regex turns a
  whole paragraph into one "word" and training memory explodes (huggingface/tokenizers#1395, #422, #994); we
  pre-split Han runs into pieces of at most ``cjk_piece_length`` characters, which bounds the trainer's word table.
* ``codepoint``: CANINE's tokenizer-free input; nothing is learned.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lmforge.data.lm_tokenizer import LMTokenizer
from lmforge.data.tokenizer_spec import (
    ASCII_PRINTABLE,
    BPE_SPECIALS,
    CHAR_SPECIALS,
    CHAR_SPECIALS_IDS,
    KINDS,
    MAX_WORD_CHARS,
    NUM_CODEPOINTS,
    _is_cjk,
    codepoints,
)


def _bert_backend(vocab: dict[str, int], *, lowercase: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    backend = Tokenizer(
        models.WordPiece(vocab, unk_token=CHAR_SPECIALS["unk"], max_input_chars_per_word=MAX_WORD_CHARS)
    )
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = CHAR_SPECIALS["cls"], CHAR_SPECIALS["sep"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens(list(CHAR_SPECIALS.values()))
    return backend


def _batches(texts: Iterable[str], max_chars: int = 1 << 20) -> Iterable[list[str]]:
    batch: list[str] = []
    size = 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def build_char_tokenizer(
    texts: Iterable[str] | None = None,
    *,
    codepoint_counts: np.ndarray | None = None,
    vocab_size: int = 21128,
    min_frequency: int = 2,
    lowercase: bool = True,
    cjk_continuations: bool = True,
) -> LMTokenizer:
    """A BERT vocabulary of single characters by frequency (ties by codepoint), within ``vocab_size`` entries.

    Each kept character costs one entry, plus one ``##`` entry when it can continue a word: letters and digits
    always, CJK characters too when ``cjk_continuations`` (bert-base-chinese layout); punctuation never.
    ``codepoint_counts`` (a histogram over all codepoints, e.g. the one ``prepare corpus`` saves) replaces ``texts``.
    """
    if vocab_size < len(CHAR_SPECIALS) + 1:
        raise ValueError(f"vocab_size must be > {len(CHAR_SPECIALS)} for a char tokenizer, got {vocab_size}")
    # Count raw codepoints with bincount, then normalise each distinct codepoint once: BERT's normalizer works
    # character by character, so counts of normalised characters are exact.
    if codepoint_counts is not None:
        counts = np.asarray(codepoint_counts, dtype=np.int64)
    else:
        counts = np.zeros(NUM_CODEPOINTS, dtype=np.int64)
        for batch in _batches(texts or []):
            counts += np.bincount(codepoints("\n".join(batch)), minlength=NUM_CODEPOINTS)
    probe = _bert_backend(dict(CHAR_SPECIALS_IDS), lowercase=lowercase)
    normalized_counts: dict[str, int] = {}
    for cp in np.flatnonzero(counts).tolist():
        if 0xD800 <= cp < 0xE000:
            continue
        for char in probe.normalizer.normalize_str(chr(cp)):
            if not char.isspace():
                normalized_counts[char] = normalized_counts.get(char, 0) + int(counts[cp])
    chosen: list[str] = []
    continuations: list[str] = []
    budget = vocab_size - len(CHAR_SPECIALS)
    required = [c for c in ASCII_PRINTABLE if probe.normalizer.normalize_str(c) == c]
    ranked = sorted(
        (c for c, n in normalized_counts.items() if n >= min_frequency and c not in required),
        key=lambda c: (-normalized_counts[c], ord(c)),
    )
    for char in required + ranked:
        words = [w for w, _ in probe.pre_tokenizer.pre_tokenize_str("a" + char + "a")]
        is_word_char = words == ["a" + char + "a"]
        is_cjk = _is_cjk(ord(char))
        needs_cont = cjk_continuations if is_cjk else is_word_char  # the normalizer isolates CJK characters
        cost = 1 + int(needs_cont)
        if cost > budget:
            if char in required:
                continue
            break
        budget -= cost
        chosen.append(char)
        if needs_cont:
            continuations.append("##" + char)
    vocab = dict(CHAR_SPECIALS_IDS)
    for token in chosen + continuations:
        vocab[token] = len(vocab)
    backend = _bert_backend(vocab, lowercase=lowercase)
    options = {"lowercase": lowercase, "cjk_continuations": cjk_continuations, "min_frequency": min_frequency}
    return LMTokenizer("char", backend=backend, special_tokens=CHAR_SPECIALS, options=options)


def bpe_pre_tokenizer(cjk_piece_length: int):
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(rf"\p{{Han}}{{1,{cjk_piece_length}}}"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


def build_bpe_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 32000, min_frequency: int = 2, cjk_piece_length: int = 2
) -> LMTokenizer:
    """Byte-level BPE trained with ``tokenizers``; Han runs are pre-split into ``cjk_piece_length`` pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if cjk_piece_length < 1:
        raise ValueError(f"cjk_piece_length must be >= 1, got {cjk_piece_length}")
    if vocab_size < 256 + len(BPE_SPECIALS):
        raise ValueError(f"vocab_size must be >= {256 + len(BPE_SPECIALS)} for byte-level BPE, got {vocab_size}")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = bpe_pre_tokenizer(cjk_piece_length)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(BPE_SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    options = {"cjk_piece_length": cjk_piece_length, "min_frequency": min_frequency}
    return LMTokenizer("bpe", backend=backend, special_tokens=BPE_SPECIALS, options=options)


def build_codepoint_tokenizer() -> LMTokenizer:
    return LMTokenizer("codepoint")


def build_tokenizer(
    kind: str,
    texts: Iterable[str] | None,
    *,
    codepoint_counts: np.ndarray | None = None,
    vocab_size: int | None = None,
    min_frequency: int = 2,
    lowercase: bool = True,
    cjk_continuations: bool = True,
    cjk_piece_length: int = 2,
) -> LMTokenizer:
    """Build a tokenizer of ``kind`` from ``texts`` (ignored for ``codepoint``; ``char`` may use a histogram)."""
    if kind == "char":
        return build_char_tokenizer(
            texts,
            codepoint_counts=codepoint_counts,
            vocab_size=vocab_size or 21128,
            min_frequency=min_frequency,
            lowercase=lowercase,
            cjk_continuations=cjk_continuations,
        )
    if kind == "bpe":
        return build_bpe_tokenizer(
            texts, vocab_size=vocab_size or 32000, min_frequency=min_frequency, cjk_piece_length=cjk_piece_length
        )
    if kind == "codepoint":
        return build_codepoint_tokenizer()
    raise ValueError(f"unknown tokenizer kind {kind!r}; choose from {KINDS}")
