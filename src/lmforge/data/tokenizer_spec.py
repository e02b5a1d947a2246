"""The fixed facts of the three tokenizer kinds: kind names (and those of imported tokenizers), special tokens and
ids, codepoint and UTF-8 helpers.

Specials take the first ids (0..4) of ``char`` (bert-base-chinese's ``[PAD] [UNK] [CLS] [SEP] [MASK]`` order) and
``bpe``; ``codepoint`` uses CANINE's private-use codepoints (HF ``CanineTokenizer``,
google-research/language ``canine/special_codepoints.py``). No dependencies: every tokenizer module imports it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

TokenizerKind = Literal["char", "bpe", "codepoint"]
KINDS: tuple[str, ...] = ("char", "bpe", "codepoint")
# Kinds of imported (published) tokenizers, one per file format (``tokenizer_import.py``); their specials may sit
# at any id (BERT: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103).
IMPORTED_KINDS: tuple[str, ...] = ("hf_json", "wordpiece", "byte_bpe", "sentencepiece")
META_FILE = "lmforge_tokenizer.json"
FORMAT_VERSION = 1
NUM_CODEPOINTS = 0x110000

# Token strings of the special tokens, in id order (ids 0..4 for char and bpe).
CHAR_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
CHAR_SPECIALS_IDS = {token: i for i, token in enumerate(CHAR_SPECIALS.values())}
BPE_SPECIALS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "mask": "<mask>", "unk": "<unk>"}
# CANINE (HF CanineTokenizer / language/canine/special_codepoints.py).
CODEPOINT_SPECIALS = {"pad": 0, "cls": 0xE000, "sep": 0xE001, "bos": 0xE002, "mask": 0xE003, "reserved": 0xE004}
CODEPOINT_NAMES = {
    0: "[PAD]",
    0xE000: "[CLS]",
    0xE001: "[SEP]",
    0xE002: "[BOS]",
    0xE003: "[MASK]",
    0xE004: "[RESERVED]",
}
# Random replacement ids for codepoint MLM: uniform over 1.1M codepoints is mostly unassigned, so we draw from the
# CJK Unified Ideographs block (the bulk of Chinese text).
CODEPOINT_RANDOM_RANGE = (0x4E00, 0xA000)
# WordPiece's max_input_chars_per_word (BERT default): longer words become one [UNK].
MAX_WORD_CHARS = 100
# Printable ASCII always enters the char vocabulary: digits and Latin letters show up in fine-tuning data even
# when the pretraining corpus is pure Chinese.
ASCII_PRINTABLE = [chr(c) for c in range(0x21, 0x7F)]


def codepoints(text: str) -> np.ndarray:
    """The codepoints of ``text`` as uint32 (lone surrogates pass through)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def is_encodable(text: str) -> bool:
    """False for strings with lone surrogates (from JSON escapes), which the Rust tokenizers cannot take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_cjk(cp: int) -> bool:
    # BERT's _is_chinese_char ranges
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )
