#!/usr/bin/env python3
"""`:dep` benchmark: a crate added to a session, first and again, in ferrocell and evcxr.

Run it from the repository root after scripts/setup:

    .venv/bin/python bench/deps.py [--only ferrocell] [--quick] [--json PATH]

(bench/run runs it with the other bench scripts and collects `--json`.)

For each kernel, in one run:

* first `:dep`: `:dep serde_json = "1"` in a fresh kernel with an empty ferrocell
  cache, which for ferrocell includes its one-time serde build (cargo's download
  cache in ~/.cargo is shared by both kernels, so neither pays for the network);
* first `:dep` of the crate on a machine where ferrocell ran before (its serde
  build is in the cache, the crate is not); for evcxr, again a fresh kernel;
* a later cell that uses the crate (median of 5, of 3 with --quick, a new cell each
  time);
* the same `:dep` line in a restarted kernel (a new kernel process, same cache);
* the first cell using the crate in that kernel.

Each figure is execute_request → execute_reply. evcxr builds its dependencies in a
temporary directory per kernel unless told otherwise, which is what a user gets.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from kernel import (execute, ferrocell_environment, find_peers, fmt_seconds, measure_kernels,
                    start, stop)
from results import figure as json_figure, write as write_document

DEP = 'serde_json = "1"'
USE = "serde_json::to_string(&vec![{n}u64]).unwrap()"


def measure(name: str, dep: str, env: dict, uses: int, log) -> dict:
    fresh = random.Random()
    figures = {}
    # A second cache where only the kernel's own serde build has happened.
    other = dict(env, FERROCELL_CACHE=f"{env['FERROCELL_CACHE']}-{name}-serde-only")
    Path(other["FERROCELL_CACHE"]).mkdir()
    if name == "ferrocell":
        km, kc, _ = start(name, other)
        try:
            execute(kc, ":dep")
        finally:
            stop(km, kc)
    km, kc, _ = start(name, other)
    try:
        figures["new_crate"] = execute(kc, f":dep {dep}")
    finally:
        stop(km, kc)
    km, kc, _ = start(name, env)
    try:
        figures["first"] = execute(kc, f":dep {dep}")
        figures["use"] = statistics.median(
            execute(kc, USE.format(n=fresh.randrange(10**9))) for _ in range(uses))
    finally:
        stop(km, kc)
    log(f"  {name}: first :dep {figures['first']:.2f} s, later cell {figures['use']:.3f} s")
    km, kc, _ = start(name, env)
    try:
        figures["restart"] = execute(kc, f":dep {dep}")
        figures["restart_use"] = execute(kc, USE.format(n=fresh.randrange(10**9)))
    finally:
        stop(km, kc)
    log(f"  {name}: after a restart :dep {figures['restart']:.2f} s, "
        f"first use {figures['restart_use']:.3f} s")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=["ferrocell", "evcxr"],
                        help="measure only this kernel (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="a later cell's median of 3 instead of 5 (the rest is one run each)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures there (for bench/run)")
    args = parser.parse_args()
    uses = 3 if args.quick else 5

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    root = Path(tempfile.mkdtemp(prefix="ferrocell-bench-deps-"))
    results: dict[str, dict | str] = {}
    reasons: dict[str, str] = {}  # why a kernel's figures are missing
    try:
        env = ferrocell_environment(root)
        peers = find_peers()
        measure_kernels([(label, name, lambda name: measure(name, DEP, env, uses, log))
                         for label, name in (("ferrocell", "ferrocell"), ("evcxr", peers["evcxr"]))],
                        args.only, results, reasons, log)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = [
        ("first", f"`:dep {DEP}` in a fresh kernel, empty cache"),
        ("new_crate", "the same, where ferrocell ran before (its serde build cached)"),
        ("use", f"a later cell using the crate (median of {uses})"),
        ("restart", "the same `:dep` in a restarted kernel"),
        ("restart_use", "first cell using it after the restart"),
    ]
    if args.json:
        def value(kernel: str, key: str):
            r = results[kernel]
            return r[key] if isinstance(r, dict) else None

        write_document(args.json, "deps", f"`:dep {DEP}`: a crate added to a session",
                       [json_figure(label, "s", "lower", value("ferrocell", key),
                                    {"evcxr": value("evcxr", key)}) for key, label in rows],
                       missing=reasons)

    print("| figure | ferrocell | evcxr | evcxr ÷ ferrocell |")
    print("|---|---|---|---|")
    for key, label in rows:
        cells = []
        for k in ("ferrocell", "evcxr"):
            r = results[k]
            cells.append(fmt_seconds(r[key]) if isinstance(r, dict) else r)
        f, e = results["ferrocell"], results["evcxr"]
        ratio = (f"{e[key] / f[key]:.1f}×" if isinstance(f, dict) and isinstance(e, dict)
                 and f[key] > 0 else "—")
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")


if __name__ == "__main__":
    main()
