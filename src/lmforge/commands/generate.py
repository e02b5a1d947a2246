"""``lmforge generate RUN "prompt"``: continue a prompt with a causal LM from a run directory or checkpoint.

The model is resolved by ``lmforge.models.loading.load_model`` (a run, checkpoint, export or Hugging Face directory
with a causal-LM head; no training code) and the prompt is encoded with the tokenizer stored beside the weights, so
ids always match the training data. CLM shards put the document separator (EOS, or [SEP] without EOS) after
every document; ``--prepend_separator`` (default true) puts one before the prompt so that it reads as the start
of a document, and generation stops at that token. Decoding options are ``lmforge.generation.generate``'s.

``--chat true`` (a model fine-tuned with ``lmforge finetune sft``): the prompt is a user turn, formatted with the
``chat_template.json`` stored beside the model's tokenizer (``data/chat_template.py``) and ending with the assistant
marker; generation stops at the end-of-turn separator and prints the reply. A prompt of ``-`` reads user turns from
stdin, one per line, and keeps the conversation (each reply is printed on its own line; when the conversation no
longer fits the model's positions with ``--max_new_tokens`` to spare, its oldest turns are left out).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["GenerateArgs", "generate"]


@dataclass  # not kw_only: the required fields are positional on the command line
class GenerateArgs:
    model: str
    """A causal LM: a run (its newest complete checkpoint), checkpoint-STEP, export or Hugging Face directory."""
    prompt: str
    """The prompt text (with --chat: the user's message; - reads one message per line from stdin)."""
    max_new_tokens: int = 64
    """Number of tokens to generate (fewer if every sequence reaches the end-of-document token)."""
    do_sample: bool = False
    """Sample (with --temperature/--top_k/--top_p) instead of greedy decoding."""
    temperature: float = 1.0
    """Sampling temperature (> 0)."""
    top_k: int | None = None
    """Sample only from the k most likely tokens."""
    top_p: float | None = None
    """Nucleus sampling: the smallest set of tokens whose probability reaches p."""
    repetition_penalty: float = 1.0
    """CTRL repetition penalty (> 1 discourages repeating tokens, e.g. 1.2)."""
    num_return_sequences: int = 1
    """Continuations to print (sampled ones differ; greedy ones are identical)."""
    seed: int = 0
    """Seed of the sampling generator (the same seed reproduces the same samples)."""
    prepend_separator: bool = True
    """Put the document separator token before the prompt (the position where training documents start)."""
    device: str = "cpu"
    """Device to run on: cpu, cuda, cuda:1, ..."""
    chat: bool = False
    """Chat with a model fine-tuned by lmforge finetune sft: its chat template formats the turns, replies stop at the
    end-of-turn marker."""
    system: str | None = None
    """With --chat: a system message opening the conversation."""


def generate(args: GenerateArgs) -> list[str]:
    """Load ``args.model``, print and return the continuation(s) of ``args.prompt`` (without the prompt)."""
    import torch

    from lmforge.generation import generate_ids
    from lmforge.models.loading import load_model

    if args.num_return_sequences < 1:
        raise ValueError(f"--num_return_sequences must be >= 1, got {args.num_return_sequences}")
    if args.system is not None and not args.chat:
        raise ValueError("--system needs --chat true")
    loaded = load_model(args.model, task="clm", with_tokenizer=True)  # any source with a CLM head; one line
    tokenizer = loaded.tokenizer
    model = loaded.model.to(args.device)
    if args.chat:
        return _chat(args, loaded, model)
    separator = tokenizer.document_separator_id
    prompt = ([separator] if args.prepend_separator else []) + tokenizer.encode(args.prompt)
    if not prompt:
        raise ValueError("the prompt is empty after tokenization; pass text or --prepend_separator true")
    device = torch.device(args.device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    continuations = generate_ids(
        model,
        [prompt] * args.num_return_sequences,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=separator,
        device=device,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        generator=generator,
    )
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in continuations]
    for i, text in enumerate(texts):
        print(f"[{i}] {text}" if len(texts) > 1 else text)
    if len(texts) > 1:  # how degenerate are they (repetition, blank outputs)? one line, lmforge.eval.degeneration
        from lmforge.eval.degeneration import degeneration_metrics, format_degeneration

        new_ids = [ids[:-1] if ids and ids[-1] == separator else ids for ids in continuations]
        print(f"degeneration over {format_degeneration(degeneration_metrics(new_ids, texts))}")
    return texts


def _chat(args: GenerateArgs, loaded: Any, model: Any) -> list[str]:
    """One reply per user turn (``args.prompt``, or stdin lines for ``-``), printed and returned."""
    import torch

    from lmforge.data.chat_template import load_chat_template
    from lmforge.generation import generate_ids

    tokenizer = loaded.tokenizer
    template = None if loaded.tokenizer_dir is None else load_chat_template(loaded.tokenizer_dir, tokenizer)
    if template is None:
        raise ValueError(
            f"{args.model} has no chat_template.json beside its tokenizer: it was not fine-tuned for chat "
            "(lmforge finetune sft); drop --chat to continue text"
        )
    if args.num_return_sequences != 1:
        raise ValueError("--chat replies once per turn; drop --num_return_sequences")
    limit = getattr(loaded.config, "max_position_embeddings", None)
    device = torch.device(args.device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict[str, str]] = []
    replies = []
    turns = (line.rstrip("\n") for line in sys.stdin) if args.prompt == "-" else iter([args.prompt])
    for text in turns:
        if not text.strip():
            continue
        history.append({"role": "user", "content": text})
        ids, _ = template.encode(tokenizer, [*system, *history], add_generation_prompt=True)
        while limit is not None and len(ids) + args.max_new_tokens > limit and len(history) > 1:
            history = history[2:]  # the oldest user turn and its reply
            ids, _ = template.encode(tokenizer, [*system, *history], add_generation_prompt=True)
        if limit is not None and len(ids) + args.max_new_tokens > limit:
            raise ValueError(
                f"the turn takes {len(ids)} tokens; with --max_new_tokens {args.max_new_tokens} that exceeds the "
                f"model's {limit} positions"
            )
        new = generate_ids(
            model, [ids], pad_token_id=tokenizer.pad_token_id, eos_token_id=template.separator_id, device=device,
            max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
            top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty, generator=generator,
        )[0]  # fmt: skip
        reply = tokenizer.decode(new[:-1] if new and new[-1] == template.separator_id else new,
                                 skip_special_tokens=True)  # fmt: skip
        print(reply, flush=True)
        replies.append(reply)
        history.append({"role": "assistant", "content": reply})
    return replies
