#!/usr/bin/env python3
"""Which rustc optimisation level should cells get by default? Compile time against
run time, measured through the kernel.

Run it from the repository root after scripts/setup:

    .venv/bin/python bench/opt.py [--reps 3] [--quick] [--json PATH]

(bench/run runs it with the other bench scripts and collects `--json`: one figure per
level, the sum over the sample cells; it has no peer.)

For each level 0–3 (`%opt N`) and each sample cell, the cell runs under `%time` with
a fresh constant (so nothing comes from the cache); the kernel reports the compile
time and the wall time of the run apart. The table shows both, per cell and summed,
and names the level with the smallest total: the time a user waits for the cell.
The samples are what notebooks of the lecture do: a trivial cell, a recursive
function, a numeric loop (Monte-Carlo π), an iterator pipeline and a HashMap count.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from kernel import ferrocell_environment, start, stop
from results import figure as json_figure, write as write_document

SAMPLES = {
    "trivial": "{n} + 1",
    "fib(27)": ("fn fib_{n}(k: u64) -> u64 {{ if k < 2 {{ k }} else {{ fib_{n}(k - 1) + "
                "fib_{n}(k - 2) }} }}\nfib_{n}(27)"),
    "π, 5M samples": ("let mut s = {n}u64; let mut hits = 0u64;\n"
                      "for _ in 0..5_000_000 {{\n"
                      "    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);\n"
                      "    let x = (s >> 11) as f64 / (1u64 << 53) as f64;\n"
                      "    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);\n"
                      "    let y = (s >> 11) as f64 / (1u64 << 53) as f64;\n"
                      "    if x * x + y * y <= 1.0 {{ hits += 1; }}\n"
                      "}}\n4.0 * hits as f64 / 5e6"),
    "iterator": "(0..3_000_000u64).filter(|x| x % 3 == 0).map(|x| x * x % {n}).sum::<u64>()",
    "HashMap": ("let mut counts = std::collections::HashMap::new();\n"
                "for i in 0..300_000u64 {{ *counts.entry((i * {n}) % 1000).or_insert(0u32) += 1; }}\n"
                "counts.len()"),
}

UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}


def seconds(text: str, label: str) -> float:
    m = re.search(rf"{label}: ([0-9.]+) (s|ms|µs|ns)", text)
    if not m:
        raise RuntimeError(f"no {label!r} in {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def timed(kc, code: str) -> tuple[float, float]:
    """Runs `%time CODE`; returns (compile, run) seconds as the kernel reports them."""
    msg_id = kc.execute("%time " + code, allow_stdin=False)
    out = []
    while True:
        msg = kc.get_iopub_msg(timeout=300)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "error":
            raise RuntimeError(f"{code!r}: {msg['content']['evalue']}")
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    text = "".join(out)
    return seconds(text, "Compile time"), seconds(text, "Wall time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="runs per cell and level")
    parser.add_argument("--quick", action="store_true", help="one run per cell and level")
    parser.add_argument("--json", metavar="PATH", help="also write the figures there (for bench/run)")
    args = parser.parse_args()
    if args.quick:
        args.reps = 1
    fresh = random.Random()
    root = Path(tempfile.mkdtemp(prefix="ferrocell-bench-opt-"))
    figures: dict[int, dict[str, tuple[float, float]]] = {}
    try:
        env = ferrocell_environment(root)
        km, kc, _ = start("ferrocell", env)
        try:
            kc.execute_interactive(":dep", timeout=600)  # the serde build is done
            timed(kc, "1 + 1")  # the prelude is built and the toolchain warm
            for level in range(4):
                kc.execute_interactive(f"%opt {level}", timeout=60)
                figures[level] = {}
                for name, code in SAMPLES.items():
                    runs = [timed(kc, code.format(n=fresh.randrange(3, 10**6)))
                            for _ in range(args.reps)]
                    figures[level][name] = (statistics.median(r[0] for r in runs),
                                            statistics.median(r[1] for r in runs))
                    c, r = figures[level][name]
                    print(f"  opt {level} {name}: compile {c * 1000:.0f} ms, run {r * 1000:.1f} ms",
                          file=sys.stderr, flush=True)
        finally:
            stop(km, kc)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print("| cell | " + " | ".join(f"opt {lv}: compile + run" for lv in figures) + " |")
    print("|---|" + "---|" * len(figures))
    for name in SAMPLES:
        cells = [f"{c * 1000:.0f} + {r * 1000:.1f} ms" for c, r in
                 (figures[lv][name] for lv in figures)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    totals = {lv: sum(c + r for c, r in figures[lv].values()) for lv in figures}
    best = min(totals, key=totals.get)
    if args.json:
        rows = []
        for lv in figures:
            compile_s = sum(c for c, _ in figures[lv].values())
            run_s = sum(r for _, r in figures[lv].values())
            rows.append(json_figure(
                f"`%opt {lv}`: compile + run of the {len(SAMPLES)} sample cells "
                + (f"(medians of {args.reps})" if args.reps > 1 else "(one run each)"),
                "s", "lower", totals[lv],
                note=f"compile {compile_s * 1000:.0f} ms + run {run_s * 1000:.0f} ms"
                     + ("; the smallest total" if lv == best else "")))
        write_document(args.json, "opt", "compile + run time per `%opt` level "
                       f"(cells: {', '.join(SAMPLES)})", rows)
    print("| **sum** | " + " | ".join(f"**{totals[lv] * 1000:.0f} ms**" for lv in figures) + " |")
    print(f"\nSmallest total wait: opt-level {best} (medians of {args.reps} runs per cell).")


if __name__ == "__main__":
    main()
