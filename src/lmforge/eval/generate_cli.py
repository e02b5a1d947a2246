"""``lmforge generate RUN "prompt"``: continue a prompt with a causal LM from a run directory or checkpoint.

The model is resolved by ``lmforge.models.loading.load_model`` (a run, checkpoint, export or Hugging Face directory
with a causal-LM head; no training code) and the prompt is encoded with the tokenizer stored beside the weights, so
ids always match the training data. CLM shards put the document separator (EOS, or [SEP] without EOS) after
every document; ``--prepend_separator`` (default true) puts one before the prompt so that it reads as the start
of a document, and generation stops at that token. Decoding options are ``lmforge.generation.generate``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GenerateArgs", "generate"]


@dataclass  # not kw_only: the required fields are positional on the command line
class GenerateArgs:
    model: str
    """A causal LM: a run (its newest complete checkpoint), checkpoint-STEP, export or Hugging Face directory."""
    prompt: str
    """The prompt text."""
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


def generate(args: GenerateArgs) -> list[str]:
    """Load ``args.model``, print and return the continuation(s) of ``args.prompt`` (without the prompt)."""
    import torch

    from lmforge.generation import generate_ids
    from lmforge.models.loading import load_model

    if args.num_return_sequences < 1:
        raise ValueError(f"--num_return_sequences must be >= 1, got {args.num_return_sequences}")
    loaded = load_model(args.model, task="clm", with_tokenizer=True)  # any source with a CLM head; one line
    tokenizer = loaded.tokenizer
    model = loaded.model.to(args.device)
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
