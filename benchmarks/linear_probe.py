"""Frozen-feature probe: does a pretrained encoder's mean-pooled vector carry more about a task than the same network
from random init? (issue 16's diagnostic, before any fine-tuning.)

For each run given, the backbone (pretrained) and its random-init twin (same architecture, config and tokenizer,
``torch.manual_seed(--seed)``) encode a bundled task's train and dev sentences once (mean of the last hidden states
over real tokens, ``--max_length`` tokens); a multinomial logistic regression (L-BFGS, L2 ``C`` * ||W||^2,
standardised features) is fitted on train and scored on dev for each ``--l2``. Nothing is selected on dev: every
L2 value is printed.

Usage: ``python benchmarks/linear_probe.py runs/quality_lo/pretrain [RUN ...] --task lo_topic``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def mean_features(backbone: torch.nn.Module, tokenizer, texts: list[str], max_length: int) -> torch.Tensor:
    from lmforge.tasks.common import encode_texts

    backbone.eval()
    pad, out = tokenizer.pad_token_id, []
    for i in range(0, len(texts), 64):
        ids = [tokens[:max_length] for tokens, _ in encode_texts(tokenizer, texts[i : i + 64])]
        width = max(map(len, ids))
        x = torch.full((len(ids), width), pad)
        mask = torch.zeros(len(ids), width, dtype=torch.bool)
        for j, row in enumerate(ids):
            x[j, : len(row)], mask[j, : len(row)] = torch.tensor(row), True
        hidden = backbone(x, attention_mask=mask)
        hidden = hidden[0] if isinstance(hidden, tuple | list) else getattr(hidden, "last_hidden_state", hidden)
        out.append((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
    return torch.cat(out)


def probe_accuracy(x_train, y_train, x_dev, y_dev, l2: float) -> float:
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_dev = (x_train - mu) / sd, (x_dev - mu) / sd
    weight = torch.zeros(x_train.shape[1], int(y_train.max()) + 1, requires_grad=True)
    bias = torch.zeros(weight.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=300)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x_train @ weight + bias, y_train) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return ((x_dev @ weight + bias).argmax(1) == y_dev).float().mean().item()


def main() -> None:
    from lmforge.tasks.finetune import FinetuneArgs, load_backbone
    from lmforge.train.checkpoint import TOKENIZER_DIR, load_model_info, resolve_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="pretraining runs or checkpoints")
    parser.add_argument("--task", default="lo_topic", help="a task under data/clue")
    parser.add_argument("--max_length", type=int, default=62)
    parser.add_argument("--l2", default="1e-4,1e-3,1e-2")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = ROOT / "data" / "clue" / args.task
    rows = {s: [json.loads(line) for line in (task / f"{s}.jsonl").open(encoding="utf-8")] for s in ("train", "dev")}
    labels = {label: i for i, label in enumerate(sorted({r["label"] for r in rows["train"]}))}
    y = {s: torch.tensor([labels[r["label"]] for r in rows[s]]) for s in rows}
    for run in args.runs:
        checkpoint = resolve_checkpoint(run)
        info = load_model_info(checkpoint)
        random_arm = dict(model=info["model"], model_overrides=info["config"],
                          tokenizer_dir=str(checkpoint / TOKENIZER_DIR))  # fmt: skip
        for arm, model_args in (("pretrained", dict(model=str(checkpoint))), ("random", random_arm)):
            torch.manual_seed(args.seed)
            _, _, backbone, tokenizer, _ = load_backbone(FinetuneArgs("classification", **model_args))
            x = {s: mean_features(backbone, tokenizer, [r["sentence"] for r in rows[s]], args.max_length) for s in rows}
            scores = {l2: probe_accuracy(x["train"], y["train"], x["dev"], y["dev"], float(l2))
                      for l2 in args.l2.split(",")}  # fmt: skip
            print(f"{run} {args.task} {arm}: dev accuracy " + ", ".join(f"L2 {k}: {v:.3f}" for k, v in scores.items()),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
