"""CANINE pretraining without a vocabulary: masked character-span prediction through hash-bucket logits.

Google released CANINE's weights but not its pretraining code, and HF has no MLM head for it
(``ConvProjection`` raises ``NotImplementedError`` for ``final_seq_char_positions``). The paper's two losses are
CANINE-S (predict the *subword* ids of masked spans: needs a vocabulary) and CANINE-C (autoregressive character
prediction inside masked spans, whose output side hashes the character into buckets). This module implements the
vocabulary-free variant that both rely on for their output space, as a plain (non-autoregressive) masked LM:

1. Masking: whole words of the segmenter of ``lmforge prepare`` (jieba for Chinese) are the mask units, on the
   codepoint sequence: ``MLMCollator`` ``mode="word"`` (15% of words, 80/10/10 per word; ``pretrain --wwm_mode
   word``, the default) or ``mode="span"`` (SpanBERT spans of whole words, geometric length p = 0.2, up to 10
   words). Replacements: MASK (0xE003), a random CJK codepoint, or kept; labels are the original codepoints
   (-100 elsewhere).
2. Prediction: the final character encoding h of each masked position goes through BERT's transform
   (dense, activation, LayerNorm; ``hash_head_transform``), is split into K shards of D / K, and shard k is scored
   against *its own hash table* (the input embedding ``HashBucketCodepointEmbedder_k``, tied) plus a per-bucket
   bias: ``logits_k = h_k @ E_k^T + b_k``, ``(N, K, H)``. Tying costs D x H multiply-adds per position instead of
   K x D x H for K untied decoders.
3. The quotient: ``bucket_k(c) = ((c + 1) * prime_k) % H`` depends on c only through ``(c + 1) % H``, so *all K
   hashes collide* for codepoints H apart (with H = 16384: U+4E2D and U+8E2D share every embedding row; the extra
   hashes never separate them). A small linear head predicts ``q(c) = (c + 1) // H`` (68 classes for H = 16384),
   which with one bucket (a bijection of the residue, the primes being coprime to H) identifies c exactly.
4. Loss: the mean over the K + 1 softmax cross-entropies (K buckets, the quotient) of each masked codepoint,
   averaged over masked positions.
5. Decoding (fill-mask): a candidate codepoint's score is ``sum_k log p_k(bucket_k(c)) + log p_q(q(c))``
   (``decode_codepoints`` over any candidate set). ``char_accuracy`` (in ``LMOutput.metrics``) counts a position
   correct when every argmax (K buckets and the quotient) is the label's: exact identification, no candidate list.

``LMOutput.logits`` holds the flattened logits ``(..., K * H + Q)``; their argmax is a bucket, not a codepoint, so
the output also carries ``num_correct`` (the exact identifications above), from which the training loop's
``train_accuracy``/``eval_accuracy`` are computed: for CANINE they equal ``char_accuracy``.

Legend: B batch, T characters, N labelled positions, D hidden, K hash functions, H buckets, Q quotients,
C candidates.
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

__all__ = [
    "CanineForMaskedChars",
    "HashBucketHead",
    "build_mlm",
    "codepoint_targets",
    "decode_codepoints",
    "hash_bucket_loss",
]


NUM_CODEPOINTS = 0x110000


def codepoint_targets(codepoints_N: Tensor, *, num_hashes: int, num_buckets: int) -> tuple[Tensor, Tensor]:
    """``(buckets (N, K), quotient (N,))`` of each codepoint: the hash buckets and ``(c + 1) // H``."""
    return hash_buckets(codepoints_N, num_hashes=num_hashes, num_buckets=num_buckets), (codepoints_N + 1) // num_buckets


class HashBucketHead(nn.Module):
    """``(..., D) -> ((..., K, H) bucket logits, (..., Q) quotient logits)``; the bucket decoder is tied to the K
    input hash tables, the quotient decoder is a small ``nn.Linear`` (``quotient``)."""

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
        self.quotient = nn.Linear(cfg.hidden_size, NUM_CODEPOINTS // self.num_buckets + 1)

    def forward(self, hidden_ND: Tensor) -> tuple[Tensor, Tensor]:
        x_ND = self.norm(self.activation(self.dense(hidden_ND))) if self.transform else hidden_ND
        shards = x_ND.chunk(self.num_hashes, dim=-1)
        tables = self._tied[0].shards
        buckets_NKH = torch.stack([F.linear(x, table.weight) for x, table in zip(shards, tables)], dim=-2)
        return buckets_NKH + self.bias, self.quotient(x_ND)


def hash_bucket_loss(buckets_NKH: Tensor, quotient_NQ: Tensor, labels_N: Tensor) -> Tensor:
    """Mean over positions of the mean of the K + 1 cross-entropies (each hash's bucket and the quotient of the
    label codepoint)."""
    num_hashes, num_buckets = buckets_NKH.shape[-2:]
    buckets_NK, quotient_N = codepoint_targets(labels_N, num_hashes=num_hashes, num_buckets=num_buckets)
    total = F.cross_entropy(upcast(buckets_NKH).flatten(0, -2), buckets_NK.flatten(), reduction="sum")
    total = total + F.cross_entropy(upcast(quotient_NQ), quotient_N, reduction="sum")
    return total / max(labels_N.numel() * (num_hashes + 1), 1)  # no labels -> 0, not NaN


@torch.no_grad()
def decode_codepoints(buckets_NKH: Tensor, quotient_NQ: Tensor, candidates_C: Tensor) -> tuple[Tensor, Tensor]:
    """Best candidate codepoint per position: ``(codepoints (N,), scores (N, C))``, with
    ``score(c) = sum_k log p_k(bucket_k(c)) + log p_q(quotient(c))``."""
    num_hashes, num_buckets = buckets_NKH.shape[-2:]
    log_probs_NKH = torch.log_softmax(upcast(buckets_NKH), dim=-1)
    buckets_CK, quotient_C = codepoint_targets(candidates_C, num_hashes=num_hashes, num_buckets=num_buckets)
    scores_NC = torch.log_softmax(upcast(quotient_NQ), dim=-1)[:, quotient_C]
    for k in range(num_hashes):
        scores_NC = scores_NC + log_probs_NKH[:, k, buckets_CK[:, k]]
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
        output_hidden_states: bool = False,
    ) -> LMOutput:
        """``logits_at_labels_only`` (with labels; the training loop's setting): the final character layer and the
        head run on the labelled positions only (TF CANINE's ``final_seq_char_positions``); ``logits`` and
        ``hidden_states`` are then ``(N, K * H + Q)`` and ``(N, D)`` in row-major order of those positions."""
        labelled_BT = None if labels is None else labels != IGNORE_INDEX
        sparse = labelled_BT is not None and logits_at_labels_only
        query_mask = labelled_BT if sparse else None
        encoded = self.backbone.encode(
            input_ids, attention_mask, token_type_ids, query_mask=query_mask, output_hidden_states=output_hidden_states
        )
        hidden = encoded.sequence
        buckets, quotient = self.head(hidden)
        loss, metrics, num_correct = None, {}, None
        if labelled_BT is not None:
            labels_N = labels[labelled_BT]
            buckets_NKH, quotient_NQ = (buckets, quotient) if sparse else (buckets[labelled_BT], quotient[labelled_BT])
            loss = hash_bucket_loss(buckets_NKH, quotient_NQ, labels_N)
            with torch.no_grad():
                head = self.head
                target_NK, target_N = codepoint_targets(
                    labels_N, num_hashes=head.num_hashes, num_buckets=head.num_buckets
                )
                hit_N = (buckets_NKH.argmax(dim=-1) == target_NK).all(dim=-1) & (quotient_NQ.argmax(dim=-1) == target_N)
                num_correct = hit_N.sum()
                metrics["char_accuracy"] = num_correct.float() / max(hit_N.numel(), 1)
        logits = torch.cat([buckets.flatten(-2), quotient], dim=-1)
        return LMOutput(loss=loss, logits=logits, hidden_states=hidden, metrics=metrics, num_correct=num_correct,
                        all_hidden_states=encoded.hidden_states)  # fmt: skip


def build_mlm(cfg: CanineConfig) -> CanineForMaskedChars:
    """CANINE + the tied hash-bucket head (the ``mlm`` task of ``lmforge pretrain --model canine``)."""
    backbone = CanineModel(cfg)
    # The pooled output serves classification heads, not this loss: frozen here, DDP needs no
    # find_unused_parameters and a fine-tuning run (which builds its own model) trains it from this init.
    backbone.pooler.requires_grad_(False)
    head = HashBucketHead(cfg, backbone.get_input_embeddings())
    init_weights(head, cfg)
    return CanineForMaskedChars(backbone, head)
