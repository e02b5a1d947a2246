"""Generation: cached == recompute, batched == one by one, logits processors vs HF, seeds, EOS, the BERT fallback,
``lmforge generate`` end to end on a checkpoint with a Chinese byte-level BPE tokenizer, and uint32 CLM shards
for vocabularies past 65,536 ids."""

import importlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import lmforge
from lmforge import cli
from lmforge.generation import apply_repetition_penalty, generate, generate_ids, next_token_logits, supports_cache
from lmforge.models.gpt.config import PRESETS, GPTConfig
from lmforge.models.gpt.model import build_clm
from lmforge.models.registry import config_to_dict

VARIANTS = ["tiny", "tiny-modern", "tiny-moe"]
PROMPTS = [[5, 9, 17, 33, 60, 2, 8], [44, 12, 90], [7, 7, 100, 31, 3]]


def _model(preset="tiny", **overrides):
    # initializer_range 0.3: diverse continuations (0.02 makes a random model repeat its last token).
    return build_clm(GPTConfig(**(PRESETS[preset] | {"initializer_range": 0.3} | overrides))).eval()


@pytest.mark.parametrize("preset", VARIANTS)
def test_cached_generation_equals_full_recompute(preset):
    model = _model(preset)
    assert supports_cache(model)
    cached = generate_ids(model, PROMPTS, max_new_tokens=12)
    recomputed = generate_ids(model, PROMPTS, max_new_tokens=12, use_cache=False)
    assert cached == recomputed


@pytest.mark.parametrize("preset", VARIANTS)
def test_left_padded_batch_equals_one_prompt_at_a_time(preset):
    model = _model(preset)
    batched = generate_ids(model, PROMPTS, max_new_tokens=10)
    assert batched == [generate_ids(model, [p], max_new_tokens=10)[0] for p in PROMPTS]


def test_models_without_a_cache_fall_back_to_recompute_row_by_row():
    bert = lmforge.build_model("bert", task="clm", preset="tiny").eval()
    assert not supports_cache(bert)
    batched = generate_ids(bert, PROMPTS, max_new_tokens=6)
    assert batched == [generate_ids(bert, [p], max_new_tokens=6)[0] for p in PROMPTS]
    with pytest.raises(ValueError, match="causal LanguageModel"):
        generate(lmforge.build_model("bert", task="mlm", preset="tiny"), torch.tensor([[5, 6]]))


def test_sampling_is_reproducible_from_a_seed_and_leaves_the_global_rng_alone():
    model = _model()
    options = dict(max_new_tokens=16, do_sample=True, temperature=0.9, top_k=20, top_p=0.95)
    state = torch.get_rng_state()
    first = generate_ids(model, PROMPTS, generator=torch.Generator().manual_seed(3), **options)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == generate_ids(model, PROMPTS, generator=torch.Generator().manual_seed(3), **options)
    assert first != generate_ids(model, PROMPTS, generator=torch.Generator().manual_seed(4), **options)


def test_degenerate_sampling_settings_reduce_to_greedy():
    model = _model()
    greedy = generate_ids(model, PROMPTS, max_new_tokens=10)
    gen = torch.Generator().manual_seed(0)
    assert generate_ids(model, PROMPTS, max_new_tokens=10, do_sample=True, top_k=1, generator=gen) == greedy
    assert generate_ids(model, PROMPTS, max_new_tokens=10, do_sample=True, top_p=1e-6, generator=gen) == greedy


def test_eos_stops_each_row_and_pads_finished_rows():
    model = _model()
    free = generate_ids(model, PROMPTS, max_new_tokens=12)
    eos = free[0][3]  # a token the first row produces at step 4
    stopped = generate_ids(model, PROMPTS, max_new_tokens=12, eos_token_id=eos)
    assert stopped[0] == free[0][: free[0].index(eos) + 1]
    for full, short in zip(free, stopped):
        assert full[: len(short)] == short and (len(short) == 12 or short[-1] == eos)
    sequences = generate(model, torch.tensor([PROMPTS[0]]), max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    assert sequences.shape[1] == len(PROMPTS[0]) + free[0].index(eos) + 1  # stopped once every row finished


def test_repetition_penalty_against_hand_computed_values():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    seen = torch.tensor([[True, True, False, False]])
    expected = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    torch.testing.assert_close(apply_repetition_penalty(logits, seen, 2.0), expected)
    model = _model()
    plain = generate_ids(model, [PROMPTS[0]], max_new_tokens=16)[0]
    penalized = generate_ids(model, [PROMPTS[0]], max_new_tokens=16, repetition_penalty=100.0)[0]
    assert len(set(penalized)) == 16 and not set(penalized) & set(PROMPTS[0])  # nothing seen is repeated
    assert len(set(plain)) < 16  # the unpenalised model does repeat (the test has power)


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda out: torch.isfinite(out[0]).tolist()  # noqa: E731
    assert kept(next_token_logits(logits, top_k=2)) == [True, True, False, False]
    assert kept(next_token_logits(logits, top_p=0.5)) == [True, False, False, False]
    assert kept(next_token_logits(logits, top_p=0.75)) == [True, True, False, False]
    assert kept(next_token_logits(logits, top_p=0.9)) == [True, True, True, False]
    torch.testing.assert_close(next_token_logits(logits, temperature=0.5), logits * 2)


@pytest.mark.hf
def test_logits_processors_match_transformers():
    generation = importlib.import_module("transformers.generation.logits_process")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=gen) * 3
    ids = torch.randint(0, 50, (4, 9), generator=gen)
    seen = torch.zeros(4, 50, dtype=torch.bool).scatter(1, ids, True)
    processors = generation.LogitsProcessorList(
        [
            generation.RepetitionPenaltyLogitsProcessor(1.3),
            generation.TemperatureLogitsWarper(0.7),
            generation.TopKLogitsWarper(20),
            generation.TopPLogitsWarper(0.8),
        ]
    )
    expected = processors(ids, logits.clone())
    actual = next_token_logits(logits, seen_BV=seen, repetition_penalty=1.3, temperature=0.7, top_k=20, top_p=0.8)
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(temperature=0.0), "temperature"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=0), "top_k"),
    ],
)
def test_bad_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        generate(_model(), torch.tensor([[5, 6]]), **options)


def test_right_padding_is_rejected():
    with pytest.raises(ValueError, match="left-padded"):
        generate(_model(), torch.tensor([[5, 6, 0]]), torch.tensor([[1, 1, 0]]))


def test_generate_cli_end_to_end_with_chinese_bpe(tmp_path, capsys):
    """Byte-level BPE on Chinese text -> a tiny GPT memorises one document -> checkpoint -> `lmforge generate`."""
    from lmforge.data.tokenizer import build_bpe_tokenizer
    from lmforge.train.checkpoint import save_checkpoint

    text = "今天天气很好，我们一起去公园散步，然后回家吃饭。"
    tokenizer = build_bpe_tokenizer([text] * 20, vocab_size=300, min_frequency=1)
    tokenizer_dir = tokenizer.save(tmp_path / "tokenizer")
    eos = tokenizer.document_separator_id
    document = torch.tensor([[eos, *tokenizer.encode(text), eos]])
    cfg = GPTConfig(**(PRESETS["tiny"] | {"vocab_size": tokenizer.vocab_size}))
    model = build_clm(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(60):
        loss = model(document, labels=document).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    run = tmp_path / "run"
    info = {"model": "gpt", "task": "clm", "config": config_to_dict(cfg)}
    save_checkpoint(run, 60, weights=model.state_dict(), model_info=info, tokenizer_dir=tokenizer_dir)

    texts = cli.run(["generate", str(run), "今天天气", "--max_new_tokens", "40"])
    assert texts == ["很好，我们一起去公园散步，然后回家吃饭。"] and capsys.readouterr().out.strip() == texts[0]
    sampled = cli.run(["generate", str(run), "今天", "--do_sample", "true", "--top_p", "0.9", "--seed", "1",
                       "--num_return_sequences", "2", "--max_new_tokens", "8"])  # fmt: skip
    assert len(sampled) == 2
    summary = capsys.readouterr().out.strip().splitlines()[-1]  # several samples: a one-line degeneration summary
    assert summary.startswith("degeneration over 2 samples: distinct-1 ") and "longest repeat" in summary
    with pytest.raises(SystemExit):  # a user error is one line, not a traceback
        cli.run(["generate", str(run), "今天", "--temperature", "0", "--do_sample", "true"])


def test_generate_args_are_positional():
    parser = cli._stage_parser("generate", cli.STAGES["generate"])
    namespace = parser.parse_args(["runs/x", "你好", "--top_k", "5"])
    assert (namespace.model, namespace.prompt, namespace.top_k) == ("runs/x", "你好", 5)


def test_clm_shards_switch_to_uint32_past_65536_ids_and_feed_a_gpt(tmp_path):
    """A vocabulary of more than 65,536 ids (a large Chinese BPE) writes uint32 CLM shards whose blocks reach the
    model unchanged; uint16 (nanoGPT's bins) would wrap id 65,536 to 0."""
    from lmforge.data.collate import CLMCollator
    from lmforge.data.shards import ShardWriter, open_shards

    vocab_size = 70_000
    ids = np.array([65_535, 65_536, 69_999, 5, 66_000, 7, 65_537])
    info = {"fingerprint": "f" * 16, "kind": "bpe", "pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3}
    writer = ShardWriter(tmp_path, objective="clm", vocab_size=vocab_size, tokenizer_info=info, block_size=8)
    writer.add(ids, word_starts=np.ones(ids.size, dtype=bool), doc_lengths=np.array([ids.size]))
    writer.close()
    shards = open_shards(tmp_path)
    assert shards.dtype == np.uint32 and (tmp_path / "tokens-00000.bin").stat().st_size == 8 * 4
    batch = CLMCollator(SimpleNamespace(pad_token_id=0))(shards.read(range(len(shards))))
    assert batch["input_ids"].tolist() == [[*ids.tolist(), 3]]  # the document, then its separator
    model = build_clm(GPTConfig(**(PRESETS["tiny"] | {"vocab_size": vocab_size})))
    assert torch.isfinite(model(batch["input_ids"], labels=batch["labels"]).loss)
