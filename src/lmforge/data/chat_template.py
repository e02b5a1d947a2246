"""The chat template: how a conversation becomes token ids, for supervised fine-tuning (``tasks/sft.py``) and for
``lmforge generate --chat``. Plain data in ``chat_template.json`` beside the tokenizer files, no Jinja.

A conversation is a list of turns ``{"role": "system" | "user" | "assistant", "content": str}``. With ``<sep>`` the
tokenizer's document separator (EOS; ``[SEP]`` for vocabularies without EOS, e.g. our char tokenizer) it reads:

    <sep>系统：{system}<sep>用户：{user}<sep>助手：{assistant}<sep>用户：{user}<sep>助手：{assistant}<sep>

- Every turn is its role marker, its content, then ``<sep>``, the end-of-turn marker. The conversation opens with
  ``<sep>`` because CLM pretraining put one after every document (``data/shard_stage.py``), so the model already
  reads it as "a new text starts here" (``lmforge generate --prepend_separator`` relies on the same fact).
- Role markers are ordinary text (default ``系统：``/``用户：``/``助手：``, full-width colon) encoded by the
  tokenizer, so no token is added and no embedding row has to be resized or learnt from scratch; the template is
  refused if a marker would encode to ``[UNK]``. ``<sep>`` is a special token: text never encodes to it (the
  tokenizer keeps a literal "[SEP]" in text as text), so a message cannot end a turn early.
- Each piece (marker, content) is encoded on its own and the ids are concatenated: byte-level BPE then never
  merges across a marker, and training and generation see exactly the same ids for the same conversation.
- Loss targets (``labels``) are an assistant turn's content and its closing ``<sep>``, so the model learns what to
  say and when to stop; everything else is ``-100``. A chat prompt ends with the assistant marker
  (``add_generation_prompt``, HF's name) and generation stops at ``<sep>``.

Comparable to ChatML (``<|im_start|>role ... <|im_end|>``) with the separator as ``<|im_end|>`` and text markers
instead of added tokens; HF stores its (Jinja) template in ``tokenizer_config.json``, we store ours beside it so an
export (which copies every tokenizer file) keeps it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.heads.lm import IGNORE_INDEX

__all__ = [
    "DEFAULT_ROLE_MARKERS",
    "ROLES",
    "TEMPLATE_FILE",
    "ChatTemplate",
    "load_chat_template",
]

TEMPLATE_FILE = "chat_template.json"
FORMAT = "lmforge.chat_template"
VERSION = 1
ROLES = ("system", "user", "assistant")
DEFAULT_ROLE_MARKERS = {"system": "系统：", "user": "用户：", "assistant": "助手："}


@dataclass(frozen=True, kw_only=True)
class ChatTemplate:
    """Role markers (text) and the separator (a special token, by text and id); ``marker_ids`` are the markers'
    token ids under the tokenizer the template was built or loaded for."""

    role_markers: dict[str, str]
    separator: str
    separator_id: int
    marker_ids: dict[str, list[int]] = field(default_factory=dict, compare=False)

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, *, role_markers: dict[str, str] | None = None) -> ChatTemplate:
        """The template of ``tokenizer``: its document separator and ``role_markers`` (default
        ``DEFAULT_ROLE_MARKERS``); ``ValueError`` without a separator or when a marker encodes to [UNK]."""
        separator_id = tokenizer.document_separator_id
        if separator_id is None:
            raise ValueError(f"the tokenizer ({tokenizer.source}) has no EOS or [SEP] token to end chat turns with")
        markers = dict(role_markers or DEFAULT_ROLE_MARKERS)
        if set(markers) != set(ROLES) or not all(isinstance(m, str) and m for m in markers.values()):
            raise ValueError(f"role markers must be non-empty texts for exactly {ROLES}, got {markers}")
        separator = tokenizer.convert_ids_to_tokens([separator_id])[0]
        return cls(role_markers=markers, separator=separator, separator_id=separator_id,
                   marker_ids=_encode_markers(tokenizer, markers))  # fmt: skip

    # ---- files ------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "role_markers": self.role_markers,
                "separator": self.separator, "separator_id": self.separator_id}  # fmt: skip

    def save(self, directory: str | Path) -> Path:
        """Write ``DIRECTORY/chat_template.json`` (the tokenizer directory of a run)."""
        path = Path(directory) / TEMPLATE_FILE
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path

    # ---- rendering --------------------------------------------------------------------------------------------

    def render_text(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = False) -> str:
        """The conversation as text with the separator spelled out (docs, debugging; never tokenized)."""
        parts = [self.separator]
        for message in messages:
            parts += [self.role_markers[message["role"]], message["content"], self.separator]
        if add_generation_prompt:
            parts.append(self.role_markers["assistant"])
        return "".join(parts)

    def render_ids(
        self, turns: Sequence[tuple[str, list[int]]], *, add_generation_prompt: bool = False
    ) -> tuple[list[int], list[int]]:
        """``(input_ids, labels)`` of ``turns`` (role, content ids), labels aligned with the inputs (the CLM loss
        shifts them): an assistant turn's content and closing separator are targets, all else ``-100``."""
        ids, labels = [self.separator_id], [IGNORE_INDEX]
        for role, content_ids in turns:
            marker = self.marker_ids[role]
            ids += [*marker, *content_ids, self.separator_id]
            if role == "assistant":
                labels += [IGNORE_INDEX] * len(marker) + [*content_ids, self.separator_id]
            else:
                labels += [IGNORE_INDEX] * (len(marker) + len(content_ids) + 1)
        if add_generation_prompt:
            ids += self.marker_ids["assistant"]
            labels += [IGNORE_INDEX] * len(self.marker_ids["assistant"])
        return ids, labels

    def encode(
        self, tokenizer: Any, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = False
    ) -> tuple[list[int], list[int]]:
        """``render_ids`` of well-formed ``messages`` (roles checked here; ``tasks/sft.py`` checks files)."""
        for message in messages:
            if message.get("role") not in ROLES:
                raise ValueError(f"unknown role {message.get('role')!r}; choose from {ROLES}")
        contents = [tokenizer.encode(m["content"]) for m in messages]
        return self.render_ids([(m["role"], c) for m, c in zip(messages, contents, strict=True)],
                               add_generation_prompt=add_generation_prompt)  # fmt: skip


def _encode_markers(tokenizer: Any, markers: dict[str, str]) -> dict[str, list[int]]:
    out = {}
    for role, text in markers.items():
        ids = tokenizer.encode(text)
        if not ids or (tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids):
            raise ValueError(
                f"the {role} marker {text!r} encodes to {tokenizer.convert_ids_to_tokens(ids)} with this tokenizer "
                f"({tokenizer.source}); every marker must be made of known tokens"
            )
        out[role] = ids
    return out


def load_chat_template(directory: str | Path, tokenizer: Any) -> ChatTemplate | None:
    """``DIRECTORY/chat_template.json`` checked against ``tokenizer`` (same separator id; markers without [UNK]), or
    None when the directory has none (a model that was never fine-tuned for chat)."""
    path = Path(directory) / TEMPLATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"{path} is not an lmforge chat template (format {FORMAT!r}, version {VERSION})")
    template = ChatTemplate.for_tokenizer(tokenizer, role_markers=data.get("role_markers"))
    if template.separator_id != data.get("separator_id"):
        raise ValueError(
            f"{path} ends turns with id {data.get('separator_id')} ({data.get('separator')!r}) but the tokenizer's "
            f"separator is {template.separator_id} ({template.separator!r}): template and tokenizer do not match"
        )
    return template
