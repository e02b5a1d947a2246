"""Issue #8 benchmark: our CANINE vs HF ``CanineModel``, and vs a subword encoder of equal depth, one process,
fp32 on CPU.

1. Training step (forward + loss + backward + AdamW step + ``zero_grad``) characters/s at the issue's config:
   sequence 2048 characters, hidden 256, 4 deep layers, 4 heads, FFN 1024, CANINE hashing (8 x 16384), rate 4,
   local chunks of 128 (our ``small`` preset). Both models hold the same weights (HF init moved into ours with
   ``lmforge.models.canine.convert``), the same dropout on both; the loss is the same
   function of the final character encodings on both sides (mean squared error to a fixed random target), so
   what is timed is the encoder. Timed twice: dropout 0.1 (CANINE's config; on CPU, SDPA with dropout takes the
   unfused math path, as HF's eager attention) and dropout 0 (fused attention kernels). A third row times an
   MLM-style step: the loss reads 15% of the positions; ours then runs the final character layer on those
   positions only (TF CANINE's ``final_seq_char_positions``, which HF does not implement), HF on all of them.
2. "Comparable efficiency to mBERT", measured: our ``bert`` encoder of equal depth and width (``small`` preset:
   4 layers, hidden 256, FFN 1024, vocab 21128) at the *equivalent subword length* 2048 / 4 = 512 tokens (the
   CANINE paper's conversion, "512 subwords ~ 2048 characters"), and at 2048 / r tokens with r the characters per
   token of our byte-level BPE (32k, trained in the run on the bundled ``data/corpus``), same batch, same kind of
   loss on its hidden states, dropout 0 on both. Reported as characters/s (BERT: r or 4 characters per token).

Method as ``gpt.py`` (its timing helpers are imported): warm-up excluded; the two models of a pair alternate within
every repeat, the order flipping each repeat. Ratios: the median of the per-repeat wall ratios (judged against the
target), the ratio of the best wall times, and the ratio of median CPU times (``time.process_time``).

Usage: ``python benchmarks/canine.py [--threads 2] [--repeats 3] [--batch_size 2] [--seq_len 2048]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch
import transformers
from gpt import interleaved, speedups  # benchmarks/gpt.py, next to this file

import lmforge
from lmforge.data.tokenizer import build_bpe_tokenizer
from lmforge.models.canine.config import PRESETS, CanineConfig
from lmforge.models.canine.convert import from_hf_state_dict, to_hf_config
from lmforge.models.canine.model import CanineModel


def build_pair(cfg: CanineConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    fields = to_hf_config(cfg)
    del fields["model_type"], fields["architectures"]
    theirs = transformers.CanineModel(transformers.CanineConfig(**fields))
    ours = CanineModel(cfg)
    ours.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))
    return ours.train(), theirs.train()


def bpe_chars_per_token(corpus: str) -> float:
    """Characters per token of our byte-level BPE (32k, trained on the corpus) over the corpus's jsonl texts."""
    lines = [line for path in sorted(Path(corpus).glob("*.jsonl")) for line in path.read_text("utf-8").splitlines()]
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    tokenizer = build_bpe_tokenizer(texts, vocab_size=32000)
    return sum(len(t) for t in texts) / sum(len(tokenizer.encode(t)) for t in texts)


def train_step(encode, params, target: torch.Tensor):
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, eps=1e-6)

    def step() -> None:
        loss = (encode() - target).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def row(name: str, times, characters: int) -> str:
    ratio = speedups(times)
    ours = characters / statistics.median(o[0] for o, _ in times)
    theirs = characters / statistics.median(t[0] for _, t in times)
    return (
        f"| {name} | {ours:,.0f} | {theirs:,.0f} | **{ratio['median']:.2f}x** ({ratio['min']:.2f}-{ratio['max']:.2f}) "
        f"| {ratio['best']:.2f}x | {ratio['cpu']:.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--seq_len", type=int, default=2048)
    parser.add_argument("--corpus", default="data/corpus", help="jsonl corpus for the characters/token ratio")
    parser.add_argument("--json", type=str, default=None, help="write all raw timings here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    batch, length = args.batch_size, args.seq_len
    chars = batch * length
    ids = torch.randint(0x4E00, 0xA000, (batch, length))
    ids[:, 0] = 0xE000
    mask = torch.ones_like(ids)
    rows, raw = [], {}
    for dropout in (0.1, 0.0):  # CANINE's training config; and without dropout (fused attention kernels apply)
        cfg = CanineConfig(**PRESETS["small"], hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        target = torch.randn(batch, length, cfg.hidden_size)
        ours, theirs = build_pair(cfg)
        ours_step = train_step(lambda model=ours: model(ids, mask), ours.parameters(), target)
        hf_step = train_step(
            lambda model=theirs: model(input_ids=ids, attention_mask=mask).last_hidden_state,
            theirs.parameters(),
            target,
        )
        with torch.no_grad():  # same weights, same outputs (dropout off for the check)
            ours.eval(), theirs.eval()
            gap = (ours(ids, mask) - theirs(input_ids=ids, attention_mask=mask).last_hidden_state).abs().max().item()
            ours.train(), theirs.train()
        print(f"dropout {dropout}: max |ours - HF| on the final character encodings (eval, same weights): {gap:.2e}")
        ours_step(), hf_step()  # warm-up
        raw[f"canine_vs_hf_dropout{dropout}"] = times = interleaved(ours_step, hf_step, args.repeats)
        rows.append(row(f"CANINE vs HF CanineModel, {length} chars, dropout {dropout}", times, chars))
        print(rows[-1], flush=True)
    # MLM-style step (dropout 0): the loss reads only 15% of the positions; ours computes the final character layer
    # only there (TF final_seq_char_positions), HF CanineModel has no such option and computes every position
    query = torch.rand(batch, length, generator=torch.Generator().manual_seed(0)) < 0.15
    query_target = torch.randn(int(query.sum()), cfg.hidden_size)
    ours_mlm = train_step(
        lambda model=ours: model.encode(ids, mask, query_mask=query).sequence, ours.parameters(), query_target
    )
    hf_mlm = train_step(
        lambda model=theirs: model(input_ids=ids, attention_mask=mask).last_hidden_state[query],
        theirs.parameters(),
        query_target,
    )
    ours_mlm(), hf_mlm()
    raw["canine_vs_hf_mlm_positions"] = times = interleaved(ours_mlm, hf_mlm, args.repeats)
    rows.append(row(f"CANINE vs HF CanineModel, {length} chars, loss on 15% positions, dropout 0", times, chars))
    print(rows[-1], flush=True)

    # subword encoder of equal depth at the equivalent subword length: the paper's 4:1, and the ratio of our
    # byte-level BPE (32k, trained here) on the bundled corpus
    ratio = bpe_chars_per_token(args.corpus)
    print(f"bundled corpus: {ratio:.3f} characters per byte-level BPE-32k token")
    for tokens, source in ((length // cfg.downsampling_rate, "paper 4:1"), (round(length / ratio), "BPE-32k ratio")):
        bert = lmforge.build_model(
            "bert",
            preset="small",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            max_position_embeddings=max(512, tokens),
        )
        token_ids = torch.randint(1, bert.config.vocab_size, (batch, tokens))
        token_target = torch.randn(batch, tokens, bert.config.hidden_size)
        bert_step = train_step(
            lambda model=bert, ids=token_ids: model(ids, torch.ones_like(ids)), bert.parameters(), token_target
        )
        bert.train(), bert_step()
        raw[f"canine_vs_bert_{tokens}"] = times = interleaved(ours_step, bert_step, args.repeats)
        rows.append(row(f"CANINE {length} chars vs our BERT {tokens} tokens ({source}), dropout 0", times, chars))
        print(rows[-1], flush=True)

    print("| pair | ours chars/s | peer chars/s | ours/peer, median wall (range) | best wall | median CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{platform.processor() or platform.machine()}, threads {args.threads}, batch {batch}, repeats {args.repeats}"
    )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"args": vars(args), **raw}, file)


if __name__ == "__main__":
    main()
