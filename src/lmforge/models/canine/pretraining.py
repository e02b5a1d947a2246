"""CANINE pretraining without a vocabulary: masked character-span prediction through hash-bucket logits.

Google released CANINE's weights but not its pretraining code, and HF has no MLM head for it
(``ConvProjection`` raises ``NotImplementedError`` for ``final_seq_char_positions``). The paper's two losses are
CANINE-S (predict the *subword* ids of masked spans: needs a vocabulary) and CANINE-C (autoregressive character
prediction inside masked spans, whose output side hashes the character into buckets). This module implements the
vocabulary-free variant that both rely on for their output space, as a plain (non-autoregressive) masked LM:

1. Masking: spans of whole words are selected on the codepoint sequence (``MLMCollator(mode="span")``: SpanBERT
   spans, geometric length p = 0.2, up to 10 words, 15% of characters; the words come from the segmenter of
   ``lmforge prepare``, so Chinese spans are whole jieba words). Selected characters are replaced 80% by MASK
   (0xE003), 10% by a random CJK codepoint, 10% kept; labels are the original codepoints (-100 elsewhere).
2. Prediction: the final character encoding h of each masked position goes through BERT's transform
   (dense, activation, LayerNorm; ``hash_head_transform``), is split into K shards of D / K, and shard k is scored
   against *its own hash table* (the input embedding ``HashBucketCodepointEmbedder_k``, tied) plus a per-bucket
   bias: ``logits_k = h_k @ E_k^T + b_k``, ``(N, K, num_hash_buckets)``. Tying costs D x B multiply-adds per
   position instead of K x D x B for K untied decoders.
3. Loss: for a masked codepoint c with buckets ``bucket_k(c) = ((c + 1) * prime_k) % B``, the mean over the K hashes
   of the softmax cross-entropy of ``logits_k`` against ``bucket_k(c)``, averaged over masked positions. A collision
   in one hash is resolved by the others, so the K predictions identify the codepoint.
4. Decoding (fill-mask, accuracy): a candidate codepoint's score is ``sum_k log_softmax(logits_k)[bucket_k(c)]``
   (``decode_codepoints`` over any candidate set). ``char_accuracy`` (in ``LMOutput.metrics``) counts a position
   correct when every hash's argmax bucket is the label's bucket: exact identification without a candidate list.

``LMOutput.logits`` holds the flattened hash logits ``(..., K * B)``; their argmax is a bucket, not a codepoint, so
the training loop's generic ``train_accuracy``/``eval_accuracy`` are not meaningful for CANINE: read
``char_accuracy``.

Legend: B batch, T characters, N labelled positions, D hidden, K hash functions, H buckets, C candidates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.heads.lm import IGNORE_INDEX, LMOutput
from lmforge.models.canine.config import CanineConfig
from lmforge.models.canine.model import CanineModel, init_weights
from lmforge.nn.canine import HashEmbedding, hash_buckets
from lmforge.nn.ffn import get_activation
from lmforge.nn.norms import LayerNorm, upcast

__all__ = ["CanineForMaskedChars", "HashBucketHead", "build_mlm", "decode_codepoints", "hash_bucket_loss"]


class HashBucketHead(nn.Module):
    """``(..., D) -> (..., K, H)`` hash-bucket logits, decoder tied to the K input hash tables."""

    def __init__(self, cfg: CanineConfig, embedding: HashEmbedding):
        super().__init__()
        self._tied = (embedding,)  # a tuple: not a submodule, the tables stay under the backbone in state_dict
        self.num_hashes, self.num_buckets = embedding.num_hashes, embedding.num_buckets
        self.transform = cfg.hash_head_transform
        if self.transform:
            self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
            self.activation = get_activation(cfg.hidden_act)
            self.norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(self.num_hashes, self.num_buckets))

    def forward(self, hidden_ND: Tensor) -> Tensor:
        x_ND = self.norm(self.activation(self.dense(hidden_ND))) if self.transform else hidden_ND
        shards = x_ND.chunk(self.num_hashes, dim=-1)
        tables = self._tied[0].shards
        return torch.stack([F.linear(x, table.weight) for x, table in zip(shards, tables)], dim=-2) + self.bias


def hash_bucket_loss(logits_NKH: Tensor, labels_N: Tensor) -> Tensor:
    """Mean over positions and hashes of the cross-entropy against each hash's bucket of the label codepoint."""
    num_hashes, num_buckets = logits_NKH.shape[-2:]
    targets_NK = hash_buckets(labels_N, num_hashes=num_hashes, num_buckets=num_buckets)
    total = F.cross_entropy(upcast(logits_NKH).flatten(0, -2), targets_NK.flatten(), reduction="sum")
    return total / max(targets_NK.numel(), 1)  # no labels -> 0, not NaN


@torch.no_grad()
def decode_codepoints(logits_NKH: Tensor, candidates_C: Tensor) -> tuple[Tensor, Tensor]:
    """Best candidate codepoint per position: ``(codepoints (N,), scores (N, C))``, with
    ``score(c) = sum_k log_softmax(logits_k)[bucket_k(c)]``."""
    num_hashes, num_buckets = logits_NKH.shape[-2:]
    log_probs_NKH = torch.log_softmax(upcast(logits_NKH), dim=-1)
    buckets_CK = hash_buckets(candidates_C, num_hashes=num_hashes, num_buckets=num_buckets)
    scores_NC = sum(log_probs_NKH[:, k, buckets_CK[:, k]] for k in range(num_hashes))
    return candidates_C[scores_NC.argmax(dim=-1)], scores_NC


class CanineForMaskedChars(nn.Module):
    """CANINE backbone + hash-bucket head; ``forward(...) -> LMOutput`` with the loss when ``labels`` (codepoints,
    -100 where not predicted) are given. Same call contract as ``lmforge.heads.lm.LanguageModel``."""

    objective = "mlm"

    def __init__(self, backbone: CanineModel, head: HashBucketHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    @property
    def config(self) -> CanineConfig:
        return self.backbone.config

    def get_input_embeddings(self) -> HashEmbedding:
        return self.backbone.get_input_embeddings()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        *,
        logits_at_labels_only: bool = False,
    ) -> LMOutput:
        """``logits_at_labels_only`` (with labels): the head runs on the labelled positions only, ``logits`` is
        ``(N, K * H)`` in row-major order of those positions (the training loop's setting)."""
        hidden_BTD = self.backbone(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        loss, metrics = None, {}
        if labels is not None:
            labelled_BT = labels != IGNORE_INDEX
            labels_N = labels[labelled_BT]
            if logits_at_labels_only:
                logits = self.head(hidden_BTD[labelled_BT])
                labelled_logits_NKH = logits
            else:
                logits = self.head(hidden_BTD)
                labelled_logits_NKH = logits[labelled_BT]
            loss = hash_bucket_loss(labelled_logits_NKH, labels_N)
            with torch.no_grad():
                targets_NK = hash_buckets(labels_N, num_hashes=self.head.num_hashes, num_buckets=self.head.num_buckets)
                hit_N = (labelled_logits_NKH.argmax(dim=-1) == targets_NK).all(dim=-1)
                metrics["char_accuracy"] = hit_N.float().sum() / max(hit_N.numel(), 1)
        else:
            logits = self.head(hidden_BTD)
        return LMOutput(loss=loss, logits=logits.flatten(-2), hidden_states=hidden_BTD, metrics=metrics)


def build_mlm(cfg: CanineConfig) -> CanineForMaskedChars:
    """CANINE + the tied hash-bucket head (the ``mlm`` task of ``lmforge pretrain --model canine``)."""
    backbone = CanineModel(cfg)
    head = HashBucketHead(cfg, backbone.get_input_embeddings())
    init_weights(head, cfg)
    return CanineForMaskedChars(backbone, head)
