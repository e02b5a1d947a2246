"""Tokenizers: a Chinese character vocabulary, byte-level BPE and a codepoint tokenizer, behind one small class.

Three kinds, all built from a corpus (``tokenizer_build.py``) and saved in a directory that ``transformers`` loads:

* ``char``: a BERT ``vocab.txt`` of single characters chosen by frequency plus ``##X`` continuation entries
  (bert-base-chinese layout, so PaddleNLP-style whole-word marks ``北 ##京`` are representable and WordPiece can
  spell any Latin word of known letters). The ``tokenizers`` pipeline is BERT's (BertNormalizer, BertPreTokenizer,
  WordPiece); ``BertTokenizerFast.from_pretrained`` / ``AutoTokenizer`` load it.
* ``bpe``: byte-level BPE trained with ``tokenizers``. Chinese has no spaces, so GPT-2's pre-split regex turns a
  whole paragraph into one "word" and training memory explodes (huggingface/tokenizers#1395, #422, #994); we
  pre-split Han runs into pieces of at most ``cjk_piece_length`` characters, which bounds the trainer's word table.
  Loadable with ``PreTrainedTokenizerFast`` / ``AutoTokenizer``.
* ``codepoint``: CANINE's tokenizer-free input (google-research/language ``canine``; HF ``CanineTokenizer``): the
  id is the Unicode codepoint, specials live in the private-use area (PAD 0, CLS 0xE000, SEP 0xE001, BOS 0xE002,
  MASK 0xE003, RESERVED 0xE004). The saved ``tokenizer_config.json`` names ``CanineTokenizer``.

Every directory also holds ``lmforge_tokenizer.json`` (kind, special ids, options and a fingerprint). The
fingerprint hashes what decides the ids (vocabulary, merges, normalizer, pre-tokenizer), is copied into every
shard index and checked before training (architectures.md §2 note 5: refs silently pointed to wrong tokens when
the tokenizer differed between preprocessing and training).

Modules: ``tokenizer_spec.py`` (kinds, special tokens, codepoint helpers), ``char_table.py`` (the ``char`` fast
path), ``lm_tokenizer.py`` (``LMTokenizer``, saving), ``tokenizer_load.py`` (``load_tokenizer``),
``tokenizer_build.py`` (building the three kinds). Every name stays importable from this module.

Fast path (style R5): BERT's normalizer + pre-tokenizer + WordPiece cost ~1.3 us per character in ``tokenizers``
(2-3 MB/s of Chinese on one core, ~7x slower than rjieba). For a vocabulary of single characters WordPiece reduces
to a table lookup, so ``char`` encodes with numpy: each codepoint is classified once by *asking the tokenizers
normalizer and pre-tokenizer* (removed / space / stand-alone / word character / complex) and runs of word
characters are spelled ``c ##c ##c`` or become one [UNK]. Documents with a "complex" character (a normalisation
that yields several characters, e.g. Hangul under NFD) go through ``tokenizers``. Tests assert fast == reference.

Deviations (details in ``lm_tokenizer.py``): raw text spelling a special token stays text; codepoints that collide
with the specials become U+FFFD; ``decode`` of ``char`` keeps whitespace only between two Latin/digit words.
"""

from __future__ import annotations

from lmforge.data.char_table import _CharTable, _fast_char_encode
from lmforge.data.lm_tokenizer import EncodedBatch, LMTokenizer, load_tokenizer
from lmforge.data.tokenizer_build import (
    bpe_pre_tokenizer,
    build_bpe_tokenizer,
    build_char_tokenizer,
    build_codepoint_tokenizer,
    build_tokenizer,
)
from lmforge.data.tokenizer_spec import (
    ASCII_PRINTABLE,
    BPE_SPECIALS,
    CHAR_SPECIALS,
    CHAR_SPECIALS_IDS,
    CODEPOINT_NAMES,
    CODEPOINT_RANDOM_RANGE,
    CODEPOINT_SPECIALS,
    FORMAT_VERSION,
    KINDS,
    MAX_WORD_CHARS,
    META_FILE,
    NUM_CODEPOINTS,
    TokenizerKind,
    codepoints,
)

__all__ = [
    "ASCII_PRINTABLE",
    "BPE_SPECIALS",
    "CHAR_SPECIALS",
    "CHAR_SPECIALS_IDS",
    "CODEPOINT_NAMES",
    "CODEPOINT_RANDOM_RANGE",
    "CODEPOINT_SPECIALS",
    "FORMAT_VERSION",
    "KINDS",
    "MAX_WORD_CHARS",
    "META_FILE",
    "NUM_CODEPOINTS",
    "EncodedBatch",
    "LMTokenizer",
    "TokenizerKind",
    "_CharTable",
    "_fast_char_encode",
    "bpe_pre_tokenizer",
    "build_bpe_tokenizer",
    "build_char_tokenizer",
    "build_codepoint_tokenizer",
    "build_tokenizer",
    "codepoints",
    "load_tokenizer",
]
