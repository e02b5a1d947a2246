"""Throughput and peak memory of ``lmforge prepare all`` against rjieba alone and a per-document reference pipeline.

Measured side by side in one run, each in a fresh Python process, on the same raw text (the bundled corpus repeated
``--repeat`` times; ``--dedup false`` so every copy goes through every stage):

* pipeline: ``prepare_all`` (ingest -> char tokenizer -> MLM shards with rjieba word starts) at each ``--num_proc``;
* (a) rjieba: ``rjieba.cut`` on every document in one process, dictionary loaded before timing;
* (b) reference: the HF ``run_chinese_ref.py`` recipe as JunnYu/FLASHQuad_pytorch runs it with rjieba: a Python
  loop per document (segment, keep multi-character CJK words), ``BertTokenizerFast`` on batches of 100 documents
  (the same char vocabulary, no truncation, so it sees all the text), then the greedy longest-word "##" marking and
  the reference positions, written out as JSON lines. Tokenizer loading is not timed.

With ``--baseline_src DIR`` (a copy of an older ``src/``) the pipeline also runs from that code at ``num_proc=1`` in
the same run, interleaved with the current code trial by trial: the before/after ratio of a change.

Throughput is MB of raw UTF-8 text per second of wall time; we report ratios (timings on a shared machine drift,
ratios measured in one run much less). Peak RSS is the largest sum over the process tree (main + workers), sampled
every 20 ms, at 1x and ``--repeat``x input. CPU seconds (user + sys of the process and its pool workers, over the
same region as the wall time) per MB show the work done, which other jobs on a shared machine disturb much less
than wall time. Output: a markdown table on stdout and JSON in ``--out``.

    python benchmarks/prepare_throughput.py --repeat 4 --num_proc 1 2
    git archive OLD src | tar -x -C /tmp/old && python benchmarks/prepare_throughput.py --repeat 6 --num_proc 1 \
        --baseline_src /tmp/old/src
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Every snippet times its measured region in wall seconds and in CPU seconds of the process and its waited-for
# children (the pool workers), so text loading, tokenizer loading and warm-up stay outside both.
TIMER = """
import json, resource, time
def cpu():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
def report(wall, processor):
    print(json.dumps({{"seconds": time.perf_counter() - wall, "cpu_seconds": cpu() - processor}}))
"""

PIPELINE = (
    TIMER
    + """
from lmforge.data.prepare import PrepareAllArgs, prepare_all
wall, processor = time.perf_counter(), cpu()
prepare_all(PrepareAllArgs(input={input!r}, output_dir={output!r}, num_proc={num_proc}, dedup=False, progress=False))
report(wall, processor)
"""
)

LOAD_TEXTS = (
    TIMER
    + """
from pathlib import Path
texts = [json.loads(line)["text"] for path in sorted(Path({input!r}).glob("*.jsonl"))
         for line in path.read_text(encoding="utf-8").split("\\n") if line]
"""
)

RJIEBA = (
    LOAD_TEXTS
    + """
import rjieba
rjieba.cut("预热词典")
wall, processor = time.perf_counter(), cpu()
for text in texts:
    rjieba.cut(text)
report(wall, processor)
"""
)

# HF run_chinese_ref.py (research_projects/mlm_wwm) with rjieba instead of LTP, as JunnYu/FLASHQuad_pytorch uses it;
# written from its description: _is_chinese_char, get_chinese_word, add_sub_symbol, prepare_ref.
REFERENCE = (
    LOAD_TEXTS
    + """
import rjieba
from transformers import BertTokenizerFast
tokenizer = BertTokenizerFast.from_pretrained({tokenizer!r})
rjieba.cut("预热词典")

def is_chinese_char(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)

def is_chinese_word(word):
    return all(is_chinese_char(ord(c)) for c in word)

def chinese_words(words):
    return [w for w in words if len(w) > 1 and is_chinese_word(w)]

def mark_continuations(tokens, words):
    if not words:
        return tokens
    longest = max(len(w) for w in words)
    marked = list(tokens)
    i = 0
    while i < len(marked):
        if is_chinese_word(marked[i]):
            for length in range(min(len(marked) - i, longest), 1, -1):
                if "".join(marked[i : i + length]) in words:
                    for j in range(i + 1, i + length):
                        marked[j] = "##" + marked[j]
                    i += length - 1
                    break
        i += 1
    return marked

wall, processor = time.perf_counter(), cpu()
with open({output!r}, "w", encoding="utf-8") as out:
    for begin in range(0, len(texts), 100):
        batch = texts[begin : begin + 100]
        segmented = [set(chinese_words(rjieba.cut(text))) for text in batch]
        encoded = tokenizer(batch, add_special_tokens=True)
        for ids, words in zip(encoded["input_ids"], segmented):
            tokens = tokenizer.convert_ids_to_tokens(ids)
            marked = mark_continuations(tokens, words)
            ref = [k for k, t in enumerate(marked) if t[:2] == "##" and len(t) == 3 and is_chinese_char(ord(t[2]))]
            out.write(json.dumps(ref) + "\\n")
report(wall, processor)
"""
)


def _tree_rss_kb(root: int) -> int:
    """Sum of VmRSS over ``root`` and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as handle:
                total += next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def run(code: str, src: Path = REPO / "src") -> dict:
    """Run ``code`` in a fresh interpreter (importing lmforge from ``src``); returns its JSON line plus the peak RSS
    of its process tree."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True, cwd=REPO)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kb(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode:
        raise SystemExit(f"benchmark step failed ({process.returncode}):\n{textwrap.indent(code, '    ')}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = peak / 1024
    return result


def build_input(corpus: Path, repeat: int, out: Path) -> tuple[Path, int]:
    """``repeat`` copies of every corpus file, as separate jsonl files; returns the dir and its text bytes."""
    target = out / f"input-{repeat}x"
    target.mkdir(parents=True, exist_ok=True)
    text_bytes = 0
    for source in sorted(corpus.glob("*.jsonl")):
        lines = [line for line in source.read_text(encoding="utf-8").split("\n") if line]
        text_bytes += repeat * sum(len(json.loads(line)["text"].encode("utf-8")) for line in lines)
        for copy in range(repeat):
            (target / f"{source.stem}-{copy}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target, text_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus")
    parser.add_argument("--repeat", type=int, default=4, help="input = the corpus repeated this many times")
    parser.add_argument("--num_proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=3, help="runs of each row; the median is reported")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "prepare")
    parser.add_argument("--baseline_src", type=Path, help="an older src/ to time in the same run (num_proc=1)")
    parser.add_argument("--skip_reference", action="store_true", help="leave out (b), the slow per-document recipe")
    parser.add_argument(
        "--skip_memory",
        action="store_true",
        help="leave out the separate num_proc=1 memory runs at 1x and --repeat x (at 1 GB each is another full run); "
        "the rows' own peak RSS still covers the --repeat x input",
    )
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    small, small_bytes = build_input(args.corpus, 1, args.out)
    large, large_bytes = build_input(args.corpus, args.repeat, args.out)
    mb = large_bytes / 1e6
    rows: dict[str, dict] = {}

    def summary(results: list[dict]) -> dict:
        return {
            "seconds": statistics.median(r["seconds"] for r in results),
            "all_seconds": [round(r["seconds"], 3) for r in results],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in results),
        }

    def median_of(code: str, trials: int) -> dict:
        return summary([run(code) for _ in range(trials)])

    # the rows measured against each other are interleaved trial by trial, so that load from other jobs on a shared
    # machine falls on all of them alike
    interleaved: dict[str, tuple[str, Path]] = {}
    for num_proc in args.num_proc:
        output = str(args.out / f"pipeline-np{num_proc}")
        interleaved[f"pipeline num_proc={num_proc}"] = (
            PIPELINE.format(input=str(large), output=output, num_proc=num_proc),
            REPO / "src",
        )
    if args.baseline_src is not None:
        output = str(args.out / "pipeline-baseline")
        interleaved["pipeline num_proc=1, --baseline_src"] = (
            PIPELINE.format(input=str(large), output=output, num_proc=1),
            args.baseline_src.resolve(),
        )
    interleaved["(a) rjieba alone"] = (RJIEBA.format(input=str(large)), REPO / "src")
    trials: dict[str, list[dict]] = {name: [] for name in interleaved}
    for _ in range(args.trials):
        for name, (code, src) in interleaved.items():
            trials[name].append(run(code, src))
    rows.update({name: summary(results) for name, results in trials.items()})
    if not args.skip_reference:
        tokenizer = args.out / f"pipeline-np{args.num_proc[0]}" / "tokenizer"
        rows["(b) reference per-document"] = median_of(
            REFERENCE.format(input=str(large), tokenizer=str(tokenizer), output=str(args.out / "reference-refs.jsonl")),
            args.trials,
        )
    memory = {}
    for repeat, directory in () if args.skip_memory else ((1, small), (args.repeat, large)):
        output = str(args.out / f"memory-{repeat}x")
        memory[f"{repeat}x"] = run(PIPELINE.format(input=str(directory), output=output, num_proc=1))["peak_rss_mb"]

    rjieba_mbs = mb / rows["(a) rjieba alone"]["seconds"]
    rjieba_cpu = rows["(a) rjieba alone"]["cpu_seconds"]
    reference = rows.get("(b) reference per-document")
    reference_mbs = mb / reference["seconds"] if reference else float("nan")
    load = (load_before, os.getloadavg()[0])
    print(f"input: bundled corpus x{args.repeat} = {mb:.1f} MB of text; {platform.machine()}, {os.cpu_count()} CPUs; "
          f"load average {load[0]:.1f} -> {load[1]:.1f} (other jobs); {datetime.date.today()}")  # fmt: skip
    print("\n| run | MB/s | vs (a) rjieba | vs (b) reference | CPU s per MB | CPU vs (a) | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        row["mb_per_s"] = mb / row["seconds"]
        print(
            f"| {name} | {row['mb_per_s']:.2f} | {row['mb_per_s'] / rjieba_mbs:.2f}x | "
            f"{row['mb_per_s'] / reference_mbs:.2f}x | {row['cpu_seconds'] / mb:.3f} | "
            f"{rjieba_cpu / row['cpu_seconds']:.2f}x | {row['peak_rss_mb']:.0f} |"
        )
    if memory:
        print(f"\npeak RSS of the pipeline (num_proc=1): 1x input {memory['1x']:.0f} MB, "
              f"{args.repeat}x input {memory[f'{args.repeat}x']:.0f} MB")  # fmt: skip
    result = {
        "date": str(datetime.date.today()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "input_mb": mb,
        "input_mb_1x": small_bytes / 1e6,
        "baseline_src": str(args.baseline_src) if args.baseline_src else None,
        "cpus": os.cpu_count(),
        "load_average": load,
        "rows": rows,
        "peak_rss_mb": memory,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prepare_throughput.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
