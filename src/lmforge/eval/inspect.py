"""``lmforge inspect RUN [--text ... | --input FILE]``: per-layer statistics of a model's hidden states, to answer
"layer n-1's output is almost the same as layer n's" (seed 001, FLASHQuad_pytorch's open question).

For each hidden state ``h_l`` (the backbone's ``output_hidden_states``: embeddings output, then each layer's; HF's
convention, ``models/common.py``), over the *real* tokens of the texts only:

- ``cosine_to_previous``: the mean over tokens of ``cos(h_{l-1}[t], h_l[t])`` (1 = the layer only rescaled them);
- ``relative_change``: the mean over tokens of ``||h_l[t] - h_{l-1}[t]|| / ||h_{l-1}[t]||``;
- ``mean_norm``: the mean token norm ``||h_l[t]||``;
- ``attention_sparsity`` (GAU-alpha, FLASH-Quad, FLASH): the fraction of the layer's attention weights over real
  (query, visible key) pairs that are zero (``squared_relu``, the FLASH ``relu^2`` kernel; FLASH: the quadratic
  part inside chunks) or below 1e-3 (``softmax_plus``), read by forward hooks on the normaliser modules.

Between two states of different lengths (CANINE's characters -> molecules -> characters) the comparisons are
``null``; CANINE's molecule states count a molecule as real when any of its characters is (its own mask). The last
state is after the final norm where the architecture has one (GPT, FLASH, Reformer), so the last
``relative_change`` includes that norm. Fine-tuned runs are inspected through their backbone.

Texts: ``--text`` (one), ``--input`` (JSON lines with ``text`` or plain lines, as ``lmforge predict`` reads them),
else the first ``--max_samples`` documents of the bundled corpus (``data/corpus``). Each is encoded as in
fine-tuning, ``[CLS] text [SEP]`` (causal LMs: the bare tokens), cut to ``--max_seq_length``.

Outputs in ``--output_dir`` (default ``RUN/inspect``; ``RUN/inspect-checkpoint-N`` for a checkpoint): a printed
table, ``inspect.json`` and ``inspect.png``.
This module's top level imports no torch (``lmforge --help`` stays fast).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = ["InspectArgs", "LayerStats", "inspect_run", "layer_statistics", "state_names", "token_cosine"]

SOFTMAX_SMALL = 1e-3  # a softmax_plus weight below this counts as "zero" in attention_sparsity


@dataclass  # not kw_only: the run is positional (lmforge inspect RUN)
class InspectArgs:
    model: str
    """A run directory (its newest or kept checkpoint) or a checkpoint-STEP directory: MLM, CLM or fine-tuned."""
    text: str | None = None
    """One text to inspect."""
    input: str | None = None
    """JSON lines with a "text" field, or one text per line (- = stdin)."""
    output_dir: str | None = None
    """Where inspect.json and inspect.png go (default: RUN/inspect)."""
    max_seq_length: int = 512
    """Tokens per text (including [CLS]/[SEP]); longer texts are cut."""
    max_samples: int = 256
    """Texts used at most (the first ones)."""
    per_device_eval_batch_size: int = 16
    """Texts per forward pass."""
    use_cpu: bool = False
    """Run on CPU even when CUDA is available."""

    def __post_init__(self) -> None:
        for name in ("max_seq_length", "max_samples", "per_device_eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.text is not None and self.input is not None:
            raise ValueError("pass --text or --input, not both")


@dataclass
class LayerStats:
    index: int  # position in the hidden-states tuple (0 = embeddings output)
    name: str
    num_tokens: int  # real tokens (molecules for CANINE's deep states) the means are over
    mean_norm: float
    cosine_to_previous: float | None  # None for the first state and across a length change
    relative_change: float | None
    attention_sparsity: float | None = None  # GAU/FLASH layers only
    sparsity_rule: str | None = None  # "== 0" or "< 0.001"


# --------------------------------------------------------------------------------------------------------------
# statistics (pure functions of tensors)


def token_cosine(a_BTD: Tensor, b_BTD: Tensor, keep_BT: Tensor) -> Tensor:
    """Cosine similarity of each real token's two vectors, ``(N,)`` in fp32 (``keep_BT`` True = real)."""
    import torch.nn.functional as F

    return F.cosine_similarity(a_BTD[keep_BT].float(), b_BTD[keep_BT].float(), dim=-1, eps=1e-12)


def _relative_change(before_BTD: Tensor, after_BTD: Tensor, keep_BT: Tensor) -> Tensor:
    before_ND, after_ND = before_BTD[keep_BT].float(), after_BTD[keep_BT].float()
    return (after_ND - before_ND).norm(dim=-1) / before_ND.norm(dim=-1).clamp(min=1e-12)


def _state_keep(state_BLD: Tensor, keep_BT: Tensor) -> Tensor:
    """The real-token mask of a state: ``keep_BT`` itself, or for a shorter state (CANINE's molecules, L = T // rate)
    the max-pooled character mask (``nn.canine.downsample_mask``, the model's own molecule mask)."""
    from lmforge.nn.canine import downsample_mask

    length, chars = state_BLD.shape[1], keep_BT.shape[1]
    if length == chars:
        return keep_BT
    assert length < chars, f"a state longer ({length}) than the input ({chars})"
    return downsample_mask(keep_BT, chars // length)


def layer_statistics(states: tuple[Tensor, ...], keep_BT: Tensor) -> list[dict[str, float | int | None]]:
    """Per state, the sums over real tokens this batch adds: ``tokens``, ``norm``, and (when the previous state has
    the same shape) ``cosine`` and ``change`` with their own ``pairs`` count."""
    out = []
    for index, state in enumerate(states):
        keep = _state_keep(state, keep_BT)
        entry: dict[str, float | int | None] = {
            "tokens": int(keep.sum()),
            "norm": float(state[keep].float().norm(dim=-1).sum()),
            "cosine": None,
            "change": None,
            "pairs": 0,
        }
        previous = states[index - 1] if index else None
        if previous is not None and previous.shape == state.shape:
            entry["cosine"] = float(token_cosine(previous, state, keep).sum())
            entry["change"] = float(_relative_change(previous, state, keep).sum())
            entry["pairs"] = entry["tokens"]
        out.append(entry)
    return out


def _query_rows(weights: Tensor, keep_BT: Tensor | None) -> Tensor | None:
    """Real query rows, broadcastable to an attention-weight tensor: ``(B, T, 1)`` for a GAU's ``(B, T, S)`` and
    ``(B, N, C, 1)`` for FLASH's chunked ``(B, N, C, C)`` (the sequence padded to N * C with masked rows)."""
    import torch.nn.functional as F

    if keep_BT is None:
        return None
    if weights.dim() == 3:
        return keep_BT[:, :, None]
    chunks, group = weights.shape[1], weights.shape[2]
    return F.pad(keep_BT, (0, chunks * group - keep_BT.shape[1]), value=False).view(-1, chunks, group, 1)


class _SparsityHooks:
    """Forward hooks on every attention normaliser under ``backbone.layers``: per layer, the count of near-zero
    weights among the real (query, visible key) pairs. ``keep_BT`` must be set before each forward."""

    def __init__(self, backbone: nn.Module):
        from lmforge.nn.gau import ReLUSquaredKernel, SoftmaxPlus, SquaredReLU

        self.keep_BT: Tensor | None = None
        self.counts: dict[int, list[int]] = {}  # layer (1-based) -> [small, total]
        self.rules: dict[int, str] = {}
        self.handles = []
        for number, layer in enumerate(getattr(backbone, "layers", []), 1):
            for module in layer.modules():
                if isinstance(module, SoftmaxPlus | SquaredReLU | ReLUSquaredKernel):
                    softmax = isinstance(module, SoftmaxPlus)
                    self.rules[number] = f"< {SOFTMAX_SMALL:g}" if softmax else "== 0"
                    self.counts[number] = [0, 0]
                    self.handles.append(module.register_forward_hook(self._hook(number, softmax)))

    def _hook(self, number: int, softmax: bool):
        import torch

        def hook(module: nn.Module, args: tuple, weights: Tensor) -> None:
            keep = args[1] if len(args) > 1 else None  # normaliser(qk, keep, bias): keys (and causality)
            valid = torch.ones_like(weights, dtype=torch.bool)
            if keep is not None:
                valid = valid & keep
            rows = _query_rows(weights, self.keep_BT)
            if rows is not None:
                valid = valid & rows
            small = weights < SOFTMAX_SMALL if softmax else weights == 0
            self.counts[number][0] += int((small & valid).sum())
            self.counts[number][1] += int(valid.sum())

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def state_names(arch: str, num_states: int) -> list[str]:
    """What each hidden state is: ``embeddings``, ``layer 1`` ... (CANINE: its three stacks, HF's order)."""
    if arch == "canine":
        deep = num_states - 5
        return ["char embeddings", "initial char layer", "molecules (downsampled)",
                *(f"deep layer {i}" for i in range(1, deep + 1)), "chars (upsampled)", "final char layer"]  # fmt: skip
    return ["embeddings", *(f"layer {i}" for i in range(1, num_states))]


# --------------------------------------------------------------------------------------------------------------
# the command


def _texts(args: InspectArgs) -> list[str]:
    from lmforge.data.bundled import find_corpus
    from lmforge.predict import read_records

    if args.text is not None:
        return [args.text]
    if args.input is not None:
        records = read_records(args.input)
        for where, record in records:
            if not isinstance(record.get("text"), str):
                raise ValueError(f"{where}: needs a string field 'text' (has {sorted(record)})")
        return [record["text"] for _, record in records[: args.max_samples]]
    texts = []
    for path in find_corpus(None):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip() and len(texts) < args.max_samples:
                    texts.append(json.loads(line)["text"])
    return texts


def _encode(texts: list[str], tokenizer: Any, *, causal: bool, limit: int) -> list[dict[str, list[int]]]:
    from lmforge.tasks.common import encode_pair, encode_texts

    features = []
    for ids, _ in encode_texts(tokenizer, texts):
        if causal:
            features.append({"input_ids": ids[:limit] or [tokenizer.pad_token_id]})
        else:
            features.append(encode_pair(ids, None, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id,
                                        max_length=limit))  # fmt: skip
    return features


def inspect_run(args: InspectArgs) -> dict[str, Any]:
    import torch

    from lmforge.models.loading import load_model
    from lmforge.tasks.common import collate
    from lmforge.utils import get_device

    if not Path(args.model).exists():
        raise ValueError(f"{args.model!r} is not a trained model: pass a run, checkpoint or model directory")
    loaded = load_model(args.model, with_tokenizer=True)  # a run, checkpoint, export, HF or JunnYu directory
    checkpoint, info, tokenizer = loaded.path, loaded.info, loaded.tokenizer
    texts = _texts(args)
    if not texts:
        raise ValueError("no texts: pass --text or --input (no bundled corpus was found either)")
    device = torch.device("cpu") if args.use_cpu else get_device()
    model = loaded.model.to(device)
    backbone = getattr(model, "backbone", model)
    config = backbone.config
    limit = min(args.max_seq_length, getattr(config, "max_position_embeddings", args.max_seq_length))
    causal = getattr(model, "objective", None) == "clm"
    features = _encode(texts, tokenizer, causal=causal, limit=limit)
    minimum = getattr(config, "downsampling_rate", 1)  # CANINE needs a molecule's worth of characters
    features = [f for f in features if len(f["input_ids"]) >= minimum]
    if not features:
        raise ValueError(f"every text is shorter than {minimum} tokens")

    hooks = _SparsityHooks(backbone)
    totals: list[dict[str, float]] = []
    try:
        with torch.no_grad():
            for start in range(0, len(features), args.per_device_eval_batch_size):
                batch = collate(
                    features[start : start + args.per_device_eval_batch_size], pad_id=tokenizer.pad_token_id
                )
                keep_BT = batch["attention_mask"].bool().to(device)
                hooks.keep_BT = keep_BT
                types = batch["token_type_ids"].to(device) if getattr(config, "type_vocab_size", 0) > 0 else None
                _, states = backbone(batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                                     token_type_ids=types, output_hidden_states=True)  # fmt: skip
                for i, entry in enumerate(layer_statistics(states, keep_BT)):
                    if i == len(totals):
                        totals.append({"tokens": 0, "norm": 0.0, "cosine": 0.0, "change": 0.0, "pairs": 0})
                    for key in ("tokens", "norm", "pairs"):
                        totals[i][key] += entry[key]
                    if entry["cosine"] is not None:
                        totals[i]["cosine"] += entry["cosine"]
                        totals[i]["change"] += entry["change"]
    finally:
        hooks.remove()

    names = state_names(info["model"], len(totals))
    layers = []
    for i, total in enumerate(totals):
        pairs = total["pairs"]
        small, seen = hooks.counts.get(i, (0, 0))
        layers.append(LayerStats(
            index=i, name=names[i], num_tokens=int(total["tokens"]),
            mean_norm=total["norm"] / max(total["tokens"], 1),
            cosine_to_previous=total["cosine"] / pairs if pairs else None,
            relative_change=total["change"] / pairs if pairs else None,
            attention_sparsity=small / seen if seen else None, sparsity_rule=hooks.rules.get(i),
        ))  # fmt: skip
    out_dir = (
        Path(args.output_dir) if args.output_dir is not None else _default_output_dir(Path(args.model), checkpoint)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "checkpoint": str(checkpoint), "model": info["model"], "task": info.get("task"), "num_texts": len(features),
        "max_seq_length": limit, "layers": [vars(layer) for layer in layers],
    }  # fmt: skip
    (out_dir / "inspect.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    _plot(layers, out_dir / "inspect.png", title=f"{info['model']} ({info.get('task')}): {checkpoint.name}")
    print(_table(layers, title=f"inspect {checkpoint} ({info['model']}, {info.get('task')}), {len(features)} texts"))
    print(f"  -> {out_dir / 'inspect.json'}, {out_dir / 'inspect.png'}")
    return result


def _default_output_dir(given: Path, checkpoint: Path) -> Path:
    """RUN/inspect for a run directory; RUN/inspect-checkpoint-N for a checkpoint (never inside it: checkpoints
    are manifest-checked)."""
    if given.resolve() == checkpoint.resolve():
        return checkpoint.parent / f"inspect-{checkpoint.name}"
    return given / "inspect"


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _table(layers: list[LayerStats], *, title: str) -> str:
    lines = [title, f"  {'#':>3} {'state':24s} {'tokens':>7} {'mean norm':>10} {'cos prev':>9} {'rel change':>10} "
                    f"{'attn sparsity':>16}"]  # fmt: skip
    for s in layers:
        sparsity = "-" if s.attention_sparsity is None else f"{s.attention_sparsity:.4f} ({s.sparsity_rule})"
        lines.append(f"  {s.index:>3} {s.name:24s} {s.num_tokens:>7} {_fmt(s.mean_norm, '.3f'):>10} "
                     f"{_fmt(s.cosine_to_previous):>9} {_fmt(s.relative_change):>10} {sparsity:>16}")  # fmt: skip
    return "\n".join(lines)


def _plot(layers: list[LayerStats], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [("cosine_to_previous", "cos(h[l-1], h[l])"), ("relative_change", "|h[l] - h[l-1]| / |h[l-1]|"),
              ("mean_norm", "mean token norm")]  # fmt: skip
    if any(layer.attention_sparsity is not None for layer in layers):
        panels.append(("attention_sparsity", "attention sparsity"))
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    for axis, (key, label) in zip(axes[0], panels, strict=True):
        points = [(layer.index, getattr(layer, key)) for layer in layers if getattr(layer, key) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker="o")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("hidden state (0 = embeddings)")
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
