"""CANINE blocks: hash buckets (published primes and formula), hash embeddings, chunking for local attention,
molecule mask, downsampling and upsampling that restores the exact character length."""

import pytest
import torch

from lmforge.nn.canine import (
    HASH_PRIMES,
    Downsample,
    HashEmbedding,
    Upsample,
    downsample_mask,
    from_chunks,
    hash_buckets,
    repeat_molecules,
    to_chunks,
)


def test_hash_buckets_use_the_published_primes_and_formula():
    assert HASH_PRIMES[:8] == (31, 43, 59, 61, 73, 97, 103, 113)  # language/canine/modeling.py _PRIMES
    cls = torch.tensor([0xE000])
    # by hand: (57344 + 1) * 31 = 1777695 = 108 * 16384 + 8223
    assert hash_buckets(cls, num_hashes=1, num_buckets=16384).tolist() == [[8223]]
    # 'a' = 97: (97 + 1) * 43 = 4214 = 65 * 64 + 54 (second hash, 64 buckets)
    assert hash_buckets(torch.tensor([97]), num_hashes=2, num_buckets=64)[0, 1].item() == 54
    codepoints = torch.randint(0, 0x110000, (3, 5))
    buckets = hash_buckets(codepoints, num_hashes=8, num_buckets=16384)
    assert buckets.shape == (3, 5, 8) and buckets.min() >= 0 and buckets.max() < 16384
    for k in range(8):
        assert torch.equal(buckets[..., k], ((codepoints + 1) * HASH_PRIMES[k]) % 16384)
    with pytest.raises(ValueError, match="num_hashes"):
        hash_buckets(codepoints, num_hashes=17, num_buckets=64)


def test_hash_embedding_concatenates_one_shard_per_hash():
    embedding = HashEmbedding(12, num_hashes=3, num_buckets=50)
    codepoints = torch.tensor([[0, 0x4E2D, 0xE003]])
    out = embedding(codepoints)
    assert out.shape == (1, 3, 12)
    buckets = hash_buckets(codepoints, num_hashes=3, num_buckets=50)
    for k in range(3):
        torch.testing.assert_close(out[..., 4 * k : 4 * (k + 1)], embedding.shards[k].weight[buckets[..., k]])
    with pytest.raises(ValueError, match="multiple of num_hashes"):
        HashEmbedding(10, num_hashes=3, num_buckets=50)


@pytest.mark.parametrize("length", [8, 11])
def test_chunks_round_trip_and_flag_the_filler(length):
    x = torch.randn(2, length, 3)
    keep = torch.ones(2, length, dtype=torch.bool)
    keep[1, 5:] = False
    x_chunks, keep_chunks, inside = to_chunks(x, keep, 4)
    chunks = -(-length // 4)
    assert x_chunks.shape == (2 * chunks, 4, 3)
    assert inside.sum().item() == 2 * length  # the filler of the last chunk is flagged outside
    assert keep_chunks.sum().item() == keep.sum().item()
    assert torch.equal(from_chunks(x_chunks, 2, length), x)
    assert torch.equal(x_chunks[1], x[0, 4:8])  # chunk 1 of example 0


def test_molecule_mask_is_a_max_pool():
    keep = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]]).bool()
    assert downsample_mask(keep, 4).tolist() == [[True, True], [True, False]]  # 11 chars -> 2 molecules


@pytest.mark.parametrize("length", [4, 7, 8, 13, 16])
def test_downsample_and_upsample_restore_the_length(length):
    down = Downsample(6, rate=4)
    up = Upsample(6, rate=4, kernel_size=4)
    chars = torch.randn(2, length, 6)
    molecules = down(chars)
    assert molecules.shape == (2, length // 4, 6)
    # molecule 0 is the [CLS] character encoding (normalised), not a convolution output
    torch.testing.assert_close(molecules[:, 0], down.norm(chars[:, 0]))
    assert up(chars, molecules).shape == (2, length, 6)


def test_repeat_molecules_by_hand():
    molecules = torch.arange(3.0).view(1, 3, 1)  # [CLS]=0, m1=1, m2=2
    # 13 chars (13 // 4 = 3 molecules), rate 4: m1 and m2 four times each (8), then the last molecule
    # 13 % 4 + 4 = 5 more times (it stands in for the molecule Downsample dropped): exactly 13
    out = repeat_molecules(molecules, rate=4, length=13)
    assert out.flatten().tolist() == [1, 1, 1, 1, 2, 2, 2, 2] + [2] * 5


def test_downsample_refuses_too_short_inputs():
    with pytest.raises(ValueError, match="at least downsampling_rate"):
        Downsample(4, rate=4)(torch.randn(1, 3, 4))


@pytest.mark.parametrize("length", [8, 11])
def test_matmul_convolutions_equal_conv1d(length):
    """Downsample's reshape-matmul and Upsample's shifted matmuls are Conv1d (valid, stride = rate) and Conv1d
    ("same": 1 zero left, 2 right for kernel 4) with the stored weights."""
    down = Downsample(6, rate=4)
    up = Upsample(6, rate=4, kernel_size=4)
    chars = torch.randn(2, length, 6)
    conv = down.conv(chars.transpose(1, 2)).transpose(1, 2)
    expected = down.norm(torch.cat([chars[:, :1], torch.nn.functional.gelu(conv)[:, :-1]], dim=1))
    torch.testing.assert_close(down(chars), expected)
    molecules = down(chars)
    stacked = torch.cat([chars, repeat_molecules(molecules, rate=4, length=length)], dim=-1).transpose(1, 2)
    conv = up.conv(torch.nn.functional.pad(stacked, (1, 2))).transpose(1, 2)
    torch.testing.assert_close(up(chars, molecules), up.norm(torch.nn.functional.gelu(conv)))
