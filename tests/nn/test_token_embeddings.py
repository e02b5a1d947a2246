"""TokenEmbeddings: sum of parts, defaults, ordering of norm and dropout."""

import pytest
import torch

from lmforge.nn.embeddings import TokenEmbeddings
from lmforge.nn.norms import LayerNorm, RMSNorm


def test_sum_of_parts_then_norm():
    emb = TokenEmbeddings(50, 8, type_vocab_size=2, max_positions=16, pad_token_id=0, norm=LayerNorm(8)).eval()
    ids = torch.randint(0, 50, (2, 5))
    types = torch.randint(0, 2, (2, 5))
    raw = emb.word_embeddings(ids) + emb.token_type_embeddings(types) + emb.position_embeddings.weight[3:8]
    torch.testing.assert_close(emb(ids, types, position_offset=3), emb.norm(raw))
    torch.testing.assert_close(emb(ids), emb(ids, torch.zeros_like(ids)))  # missing segments = segment 0


def test_minimal_embedding_and_orders():
    ids = torch.randint(0, 50, (2, 5))
    plain = TokenEmbeddings(50, 8)
    torch.testing.assert_close(plain(ids), plain.word_embeddings(ids))
    assert plain(ids, torch.zeros_like(ids)).shape == (2, 5, 8)  # all-zero segments are fine without a table
    with pytest.raises(ValueError, match="type_vocab_size=0"):
        plain(ids, torch.ones_like(ids))
    first = TokenEmbeddings(50, 8, norm=RMSNorm(8, elementwise_affine=False), dropout=0.5, order="dropout_norm")
    first.load_state_dict(plain.state_dict())
    torch.testing.assert_close(first.eval()(ids), first.norm(plain(ids)))
    with pytest.raises(ValueError, match="order"):
        TokenEmbeddings(50, 8, order="both")
