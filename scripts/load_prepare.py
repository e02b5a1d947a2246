"""Load test: ``lmforge prepare all`` on >= 1 GB of generated text keeps its memory flat (peak RSS reported).

What: generates ``--gb`` GB of unique Chinese documents (random paragraphs of the bundled corpus, each with a
serial number so de-duplication keeps them all) into 64 MB jsonl files, streaming (the generator itself holds
one file's worth of lines at most), then runs ``lmforge prepare all`` on them in a child process and samples the
resident memory of the child's whole process tree from ``/proc`` every 0.2 s. With ``--small_gb`` it first
does the same on a smaller input, so the report compares the two peaks: flat memory means the peak does not
grow with the input.

Usage (one benchmark at a time on a shared machine)::

    flock /tmp/lmforge-bench.lock .venv/bin/python scripts/load_prepare.py --gb 1.0 --small_gb 0.1

Linux only (``/proc``). The generated input and the prepared output are deleted unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILE_BYTES = 64 << 20


def generate(directory: Path, total_bytes: int, *, seed: int = 0) -> int:
    """Write ``total_bytes`` of jsonl documents (64 MB per file); returns the bytes written."""
    paragraphs = []
    for name in ("poetry.jsonl", "libreoffice_help.jsonl"):
        with open(ROOT / "data" / "corpus" / name, encoding="utf-8") as f:
            for line in f:
                paragraphs.extend(p for p in json.loads(line)["text"].split("\n") if len(p) >= 8)
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written, serial, index = 0, 0, 0
    while written < total_bytes:
        lines, size = [], 0
        while size < FILE_BYTES and written + size < total_bytes:
            text = f"第{serial}篇。" + "\n".join(rng.choices(paragraphs, k=rng.randint(4, 40)))
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            lines.append(line)
            size += len(line.encode("utf-8"))
            serial += 1
        (directory / f"gen-{index:05d}.jsonl").write_text("".join(lines), encoding="utf-8")
        written += size
        index += 1
    return written


def _tree_rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` and all its descendants (kB), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            with open(f"/proc/{current}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total


def run_prepare(input_dir: Path, output_dir: Path, num_proc: int) -> dict:
    command = [sys.executable, "-m", "lmforge", "prepare", "all", "--input", str(input_dir)]
    command += ["--output_dir", str(output_dir), "--num_proc", str(num_proc), "--progress", "false"]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples = []
    while child.poll() is None:
        samples.append((time.perf_counter() - started, _tree_rss_kb(child.pid)))
        time.sleep(0.2)
    output = child.stdout.read()
    if child.returncode != 0:
        raise SystemExit(f"prepare failed (rc={child.returncode}):\n{output[-3000:]}")
    seconds = time.perf_counter() - started
    peak = max(kb for _, kb in samples) / 1024
    # the peak within each tenth of the run: flat memory shows as flat deciles, not a ramp
    deciles = [
        max((kb for t, kb in samples if seconds * i / 10 <= t < seconds * (i + 1) / 10), default=0) / 1024
        for i in range(10)
    ]
    return {"seconds": seconds, "peak_rss_mb": peak, "deciles_mb": deciles, "output": output.strip()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="input size of the large run (GB of UTF-8 jsonl)")
    parser.add_argument("--small_gb", type=float, default=0.1, help="input size of the comparison run (0: none)")
    parser.add_argument("--num_proc", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lmforge-load-"))
    results = {}
    try:
        for label, gb in (("small", args.small_gb), ("large", args.gb)):
            if gb <= 0:
                continue
            inputs = workdir / f"input-{label}"
            started = time.perf_counter()
            size = generate(inputs, int(gb * 1e9))
            generated_s = time.perf_counter() - started
            result = run_prepare(inputs, workdir / f"prepared-{label}", args.num_proc)
            result |= {"input_bytes": size, "generate_s": generated_s}
            results[label] = result
            print(
                f"{label}: {size / 1e9:.3f} GB in {result['seconds']:.0f} s ({size / 1e6 / result['seconds']:.1f} "
                f"MB/s), peak RSS {result['peak_rss_mb']:.0f} MB; per tenth of the run: "
                + " ".join(f"{d:.0f}" for d in result["deciles_mb"]),
                flush=True,
            )
            shutil.rmtree(inputs, ignore_errors=True)
            if not args.keep:
                shutil.rmtree(workdir / f"prepared-{label}", ignore_errors=True)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if "small" in results and "large" in results:
        ratio = results["large"]["peak_rss_mb"] / results["small"]["peak_rss_mb"]
        grow = results["large"]["input_bytes"] / results["small"]["input_bytes"]
        print(f"peak RSS x{ratio:.2f} for x{grow:.1f} the input", flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    print(f"machine: {machine}; num_proc={args.num_proc}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results, "machine": machine, "num_proc": args.num_proc}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
