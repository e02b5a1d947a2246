"""lmforge.data: raw text -> jsonl corpus -> tokenizer -> token shards -> batches.

``prepare`` (the CLI stages), ``corpus`` (ingest), ``segment`` (word spans), ``tokenizer`` (char / bpe / codepoint),
``shards`` (memory-mapped token files), ``loader`` (resumable sharded batches), ``masking`` and ``collate``
(whole-word MLM and CLM batches). Import the submodules directly; this package imports nothing so that
``lmforge prepare --help`` stays fast. Documentation: ``docs/pipeline/``.
"""
