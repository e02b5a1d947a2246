"""Issue #8 benchmark: our CANINE vs HF ``CanineModel``, and vs a subword encoder of equal depth, one process,
fp32 on CPU.

1. Training step (forward + loss + backward + AdamW step + ``zero_grad``) characters/s at the issue's config:
   sequence 2048 characters, hidden 256, 4 deep layers, 4 heads, FFN 1024, CANINE hashing (8 x 16384), rate 4,
   local chunks of 128 (our ``small`` preset). Both models hold the same weights (HF init moved into ours with
   ``lmforge.models.canine.convert``), the same dropout on both; the loss is the same
   function of the final character encodings on both sides (mean squared error to a fixed random target), so
   what is timed is the encoder. Timed twice: dropout 0.1 (CANINE's config; on CPU, SDPA with dropout takes the
   unfused math path, as HF's eager attention) and dropout 0 (fused attention kernels).
2. "Comparable efficiency to mBERT", measured: our ``bert`` encoder of equal depth and width (``small`` preset:
   4 layers, hidden 256, FFN 1024, vocab 21128) at the *equivalent subword length* 2048 / 4 = 512 tokens (the
   CANINE paper's conversion, "512 subwords ~ 2048 characters"; not a ratio measured on our corpus), same batch,
   same kind of loss on its hidden states, dropout 0 on both. Reported as characters/s (BERT: 4 characters per token).

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

import torch
import transformers
from gpt import interleaved, speedups  # benchmarks/gpt.py, next to this file

import lmforge
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

    # subword encoder of equal depth at the equivalent subword length (dropout 0 on both: ours is the last built)
    tokens = length // cfg.downsampling_rate
    bert = lmforge.build_model("bert", preset="small", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    token_ids = torch.randint(1, bert.config.vocab_size, (batch, tokens))
    token_target = torch.randn(batch, tokens, bert.config.hidden_size)
    bert_step = train_step(lambda: bert(token_ids, torch.ones_like(token_ids)), bert.parameters(), token_target)
    bert.train(), bert_step()
    raw["canine_vs_bert"] = times = interleaved(ours_step, bert_step, args.repeats)
    rows.append(row(f"CANINE {length} chars vs our BERT {tokens} tokens, dropout 0", times, chars))

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
