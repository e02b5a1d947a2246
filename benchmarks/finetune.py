"""One fine-tuning step of our sequence classifier vs ``transformers.BertForSequenceClassification``, same config.

Ours: ``TaskModel(bert backbone, SequenceClassificationHead(pooling="cls", use_pooler=True))`` (the pooler makes it
like for like with HF's dense + tanh pooler). Theirs: ``BertForSequenceClassification`` with our weights copied
in through the production key map (``models/bert/convert.py``); before timing, the eval-mode logits of the two are
checked equal (fp32, ``assert_close`` defaults), so the two compute the same function.

Config: TNEWS-like, hidden 256, 4 layers, 4 heads, FFN 1024, vocab 21128, 15 labels, sequence 128, batch 32, fp32,
dropout 0.1, SDPA attention in both, AdamW. A step = forward + backward + ``optimizer.step()`` + ``zero_grad``.
Timed interleaved (ours, theirs, ...) after warm-up; the median over repeats; wall and process CPU time (with
``--threads 1`` CPU time is the contention-proof figure on a shared machine).

Usage: ``python benchmarks/finetune.py [--repeats 7] [--steps 3] [--threads 1] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime

import torch

CONFIG = dict(vocab_size=21128, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
              max_position_embeddings=512, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)  # fmt: skip
NUM_LABELS = 15


def build_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    import transformers

    import lmforge
    from lmforge.heads.classification import SequenceClassificationHead, TaskModel
    from lmforge.models.bert.convert import _key_pairs

    torch.manual_seed(0)
    theirs = transformers.BertForSequenceClassification(
        transformers.BertConfig(**CONFIG, num_labels=NUM_LABELS, attn_implementation="sdpa")
    )
    backbone = lmforge.build_model("bert", **CONFIG)
    ours = TaskModel(backbone, SequenceClassificationHead(256, NUM_LABELS, pooling="cls", use_pooler=True))
    sd = theirs.state_dict()
    mapped = {our: sd[hf] for our, hf in _key_pairs(backbone.config) if our.startswith("backbone.")}
    for mine, hf in (("pooler", "bert.pooler.dense"), ("classifier", "classifier")):
        for p in ("weight", "bias"):
            mapped[f"head.{mine}.{p}"] = sd[f"{hf}.{p}"]
    ours.load_state_dict(mapped, strict=True)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed repeat")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    ours, theirs = build_pair()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, CONFIG["vocab_size"], (args.batch, args.length), generator=gen)
    mask = torch.ones_like(ids)
    mask[: args.batch // 2, args.length * 3 // 4 :] = 0  # some padding, as real batches have
    types = torch.zeros_like(ids)
    labels = torch.randint(0, NUM_LABELS, (args.batch,), generator=gen)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, token_type_ids=types).logits
        b = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    torch.testing.assert_close(a, b)
    parity = float((a - b).abs().max())

    def make_step(model: torch.nn.Module, is_ours: bool):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        model.train()

        def step() -> None:
            if is_ours:
                loss = model(ids, attention_mask=mask, token_type_ids=types, labels=labels).loss
            else:
                loss = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    steps = {"lmforge": make_step(ours, True), "transformers": make_step(theirs, False)}
    for step in steps.values():  # warm-up
        step(), step()
    wall: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step()
            wall[name].append((time.perf_counter() - w0) / args.steps)
            cpu[name].append((time.process_time() - c0) / args.steps)
    med = {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in steps}
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''} threads={args.threads}".strip(),
        "config": {**CONFIG, "num_labels": NUM_LABELS, "batch": args.batch, "length": args.length},
        "parity_max_abs_diff": parity,
        "median_step_s": {k: {"wall": w, "cpu": c} for k, (w, c) in med.items()},
        "speedup_wall": med["transformers"][0] / med["lmforge"][0],
        "speedup_cpu": med["transformers"][1] / med["lmforge"][1],
    }
    print(f"logits parity: max |ours - theirs| = {parity:.2e}")
    print("| model | step wall (s) | step CPU (s) |\n|---|---:|---:|")
    for k, (w, c) in med.items():
        print(f"| {k} | {w:.4f} | {c:.4f} |")
    print(f"speed-up of lmforge vs transformers: wall {result['speedup_wall']:.2f}x, CPU {result['speedup_cpu']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
