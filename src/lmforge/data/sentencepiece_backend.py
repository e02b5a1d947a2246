"""``sentencepiece`` behind the small part of the ``tokenizers.Tokenizer`` interface that ``LMTokenizer`` uses, for
imported sentencepiece models (``tokenizer_import.py``, which re-exports these names): a conversion to
``tokenizers`` is exact only for some models, so the model runs in ``sentencepiece`` itself."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmforge.data.tokenizer_spec import codepoints

__all__ = ["SentencePieceBackend", "SentencePieceEncoding"]


@dataclass(frozen=True)
class SentencePieceEncoding:
    ids: list[int]
    offsets: list[tuple[int, int]]  # character spans in the text


class SentencePieceBackend:
    """``sentencepiece.SentencePieceProcessor`` behind the part of ``tokenizers.Tokenizer`` that ``LMTokenizer``
    uses. Offsets: sentencepiece reports UTF-8 byte spans of the original text; they become character spans
    (a byte-fallback piece for part of a character spans that whole character, or nothing)."""

    def __init__(self, model_bytes: bytes, *, name: str = "sentencepiece model") -> None:
        import sentencepiece

        self.model_bytes = model_bytes
        self.processor = sentencepiece.SentencePieceProcessor()
        try:
            self.processor.LoadFromSerializedProto(model_bytes)
        except (RuntimeError, OSError, TypeError) as error:
            raise ValueError(f"cannot read {name} as a sentencepiece model: {error}") from None
        self.encode_special_tokens = True  # sentencepiece never matches control symbols in text
        self.extra_special_ids: frozenset[int] = frozenset()

    def get_vocab_size(self, with_added_tokens: bool = True) -> int:
        return self.processor.get_piece_size()

    def get_vocab(self, with_added_tokens: bool = True) -> dict[str, int]:
        return {self.processor.id_to_piece(i): i for i in range(self.processor.get_piece_size())}

    def token_to_id(self, token: str) -> int | None:
        index = self.processor.piece_to_id(token)
        return index if self.processor.id_to_piece(index) == token else None  # unknown pieces map to unk

    def id_to_token(self, index: int) -> str:
        return self.processor.id_to_piece(index)

    def special_ids(self) -> set[int]:
        size = self.processor.get_piece_size()
        controls = {i for i in range(size) if self.processor.is_control(i) or self.processor.is_unknown(i)}
        return controls | set(self.extra_special_ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.processor.decode(list(ids))

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[SentencePieceEncoding]:
        if not texts:
            return []
        try:
            protos = self.processor.encode(list(texts), return_type="proto")
        except UnicodeEncodeError:  # a lone surrogate: LMTokenizer turns this into its one-line message
            raise TypeError("text is not valid Unicode") from None
        encodings = []
        for text, proto in zip(texts, protos):
            cps = codepoints(text)
            utf8_lengths = 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)
            char_bytes = np.zeros(cps.size + 1, dtype=np.int64)  # byte offset where each character starts
            np.cumsum(utf8_lengths, out=char_bytes[1:])
            ids = [piece.id for piece in proto.pieces]
            begin = np.fromiter((piece.begin for piece in proto.pieces), dtype=np.int64, count=len(ids))
            end = np.fromiter((piece.end for piece in proto.pieces), dtype=np.int64, count=len(ids))
            starts = np.searchsorted(char_bytes, begin, side="right") - 1
            ends = np.maximum(np.searchsorted(char_bytes, end, side="left"), starts)
            encodings.append(SentencePieceEncoding(ids, list(zip(starts.tolist(), ends.tolist()))))
        return encodings
