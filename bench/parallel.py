#!/usr/bin/env python3
"""Parallel benchmark: counting primes on threads, against Python's ways of doing it.

Run it from the repository root after scripts/setup (and, for every peer,
`.venv/bin/pip install -r bench/requirements.txt`):

    .venv/bin/python bench/parallel.py [--limit 5000000] [--quick] [--json PATH]

(bench/run runs it with the other bench scripts and collects `--json`; --quick counts
the primes below 1 000 000 and takes medians of 5 instead of 20.)

In one run, the same workload — count the primes below LIMIT by trial division,
split into blocks of 1000 numbers dealt out round-robin so both halves cost the same:

* the machine's real capacity: one busy loop, then two at once (it is shared);
* ferrocell: one thread (`%time`), `%%parallel threads 2` and `processes 2`, each
  also with `--each` over the blocks;
* CPython: one thread, `threading` with 2 threads, `multiprocessing.Pool(2)`;
* ipyparallel with 2 engines (a local cluster), when installed;
* Numba `@njit` on one thread and `@njit(parallel=True)` with `prange` on 2, when
  installed (compile time excluded: it is warmed first).

Then the overheads: an empty `%%parallel threads 2` and `processes 2` cell (the run,
as the table reports it, and the request's round trip through the kernel), and
`--each` over 100 000 trivial items on both against ipyparallel's
load-balanced map of the same items, by default and chunked by hand.

A peer that is not installed or fails is shown as "not measured"; the JSON document
says why.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

from kernel import ferrocell_environment, fmt_seconds, start, stop
from results import figure as json_figure, write as write_document

BLOCK = 1000


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def count_blocks(blocks: list[int]) -> int:
    return sum(1 for b in blocks for n in range(b * BLOCK, (b + 1) * BLOCK) if is_prime(n))


def halves(limit: int, parts: int) -> list[list[int]]:
    blocks = list(range(limit // BLOCK))
    return [blocks[r::parts] for r in range(parts)]


def timed(f) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = f()
    return time.perf_counter() - t0, value


def capacity() -> float:
    """How much faster two busy processes finish than twice one (2.0: two real cores)."""
    one, _ = timed(lambda: busy_work(3_000_000))
    with multiprocessing.Pool(2) as pool:
        two, _ = timed(lambda: pool.map(busy_work, [3_000_000, 3_000_000]))
    return 2 * one / two


def busy_work(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i % 7
    return s


# --- ferrocell ---------------------------------------------------------------------


IS_PRIME_RS = ("fn is_prime(n: u64) -> bool { if n < 2 { return false; } let mut d = 2; "
               "while d * d <= n { if n % d == 0 { return false; } d += 1; } true }")


def run_cell(kc, code: str) -> str:
    """Runs a cell; returns all its text (streams, results, displays)."""
    msg_id = kc.execute(code, allow_stdin=False)
    texts = []
    while True:
        msg = kc.get_iopub_msg(timeout=600)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            texts.append(content["text"])
        elif kind in ("execute_result", "display_data", "update_display_data"):
            texts.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            raise RuntimeError(f"{code!r}: {content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "\n".join(texts)


UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}


def seconds_in(text: str, pattern: str) -> float:
    m = re.findall(pattern + r"([0-9.]+) (s|ms|µs|ns)", text)
    if not m:
        raise RuntimeError(f"no {pattern!r} in {text!r}")
    value, unit = m[-1]
    return float(value) * UNITS[unit]


def ferrocell(limit: int, env: dict, reps: int, log) -> dict:
    figures = {}
    km, kc, _ = start("ferrocell", env)
    try:
        run_cell(kc, ":dep")
        run_cell(kc, IS_PRIME_RS)
        blocks = limit // BLOCK
        one = f"(0..{limit}u64).filter(|&n| is_prime(n)).count()"
        run_cell(kc, f"%time {one}")  # compiled once; the second run is measured
        text = run_cell(kc, f"%time {one}")
        figures["rust_1"] = seconds_in(text, "Wall time: ")
        for backend in ("threads", "processes"):
            two = (f"%%parallel {backend} 2\n"
                   f"(0..{blocks}u64).filter(|b| b % size as u64 == rank as u64)"
                   f".flat_map(|b| b * {BLOCK}..(b + 1) * {BLOCK}).filter(|&n| is_prime(n)).count()")
            run_cell(kc, two)
            text = run_cell(kc, two)
            figures[f"rust_{backend}2"] = seconds_in(text, rf"2 ranks on 2 {backend} in ")
            log(f"  ferrocell {backend} 2:\n{text}")
            each = (f"%%parallel {backend} 2 --each 0..{blocks}u64\n"
                    f"(item * {BLOCK}..(item + 1) * {BLOCK}).filter(|&n| is_prime(n)).count()")
            run_cell(kc, each)
            text = run_cell(kc, each)
            figures[f"rust_{backend}_each2"] = seconds_in(text, rf"{blocks} items on 2 {backend} in ")
            empty = f"%%parallel {backend} 2\nrank"
            run_cell(kc, empty)
            runs, trips = [], []
            for _ in range(reps):
                t0 = time.perf_counter()
                text = run_cell(kc, empty)
                trips.append(time.perf_counter() - t0)
                runs.append(seconds_in(text, rf"2 ranks on 2 {backend} in "))
            figures[f"empty_{backend}"] = statistics.median(runs)
            figures[f"empty_{backend}_trip"] = statistics.median(trips)
            items = f"%%parallel {backend} 2 --each 0..100_000u64\nitem"
            run_cell(kc, items)
            text = run_cell(kc, items)
            figures[f"each_100k_{backend}"] = seconds_in(text, rf"100000 items on 2 {backend} in ")
    finally:
        stop(km, kc)
    log(f"  ferrocell: {figures}")
    return figures


# --- Python peers ------------------------------------------------------------------


def cpython(limit: int, log) -> dict:
    figures = {}
    figures["py_1"], count = timed(lambda: count_blocks(list(range(limit // BLOCK))))
    log(f"  CPython, one thread: {figures['py_1']:.2f} s ({count} primes)")
    results = [0, 0]

    def work(r: int, part: list[int]) -> None:
        results[r] = count_blocks(part)

    def threaded():
        ts = [threading.Thread(target=work, args=(r, p)) for r, p in enumerate(halves(limit, 2))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return sum(results)

    figures["py_threads2"], _ = timed(threaded)
    log(f"  CPython, threading ×2: {figures['py_threads2']:.2f} s")
    with multiprocessing.Pool(2) as pool:
        figures["py_pool2"], _ = timed(lambda: sum(pool.map(count_blocks, halves(limit, 2))))
    log(f"  CPython, Pool(2): {figures['py_pool2']:.2f} s")
    return figures


def ipyparallel_figures(limit: int, log) -> dict:
    import ipyparallel as ipp

    figures = {}
    with ipp.Cluster(n=2, log_level=40) as rc:
        view = rc[:]
        view.execute("BLOCK = %d" % BLOCK, block=True)
        view.push({"is_prime": is_prime, "count_blocks": count_blocks}, block=True)
        figures["ipp_2"], _ = timed(lambda: sum(view.map_sync(count_blocks, halves(limit, 2))))
        lview = rc.load_balanced_view()
        items = list(range(100_000))
        t, _ = timed(lambda: lview.map_sync(lambda x: x, items[:2000]))
        figures["ipp_items_default"] = 2000 / t
        t, _ = timed(lambda: lview.map_sync(lambda x: x, items, chunksize=5000))
        figures["ipp_items_chunked"] = len(items) / t
    log(f"  ipyparallel: {figures}")
    return figures


NUMBA_SOURCE = '''
import numba

@numba.njit
def is_prime_nb(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True

@numba.njit
def count_one(limit):
    c = 0
    for n in range(limit):
        if is_prime_nb(n):
            c += 1
    return c

@numba.njit(parallel=True)
def count_prange(limit, block):
    blocks = limit // block
    c = 0
    for b in numba.prange(blocks):
        for n in range(b * block, (b + 1) * block):
            if is_prime_nb(n):
                c += 1
    return c
'''


def numba_figures(limit: int, log) -> dict:
    import numba

    numba.set_num_threads(2)
    scope: dict = {}
    exec(NUMBA_SOURCE, scope)
    scope["count_one"](10_000)
    scope["count_prange"](10_000, BLOCK)
    figures = {}
    figures["numba_1"], _ = timed(lambda: scope["count_one"](limit))
    figures["numba_prange2"], _ = timed(lambda: scope["count_prange"](limit, BLOCK))
    log(f"  Numba: {figures}")
    return figures


def peer_figures(name: str, measure, limit: int, log) -> tuple[dict, str | None]:
    """A peer's figures, or none and the reason (not installed, or how it failed)."""
    try:
        return measure(limit, log), None
    except ImportError as err:
        reason = (f"{name} is not installed here ({err}; "
                  "`.venv/bin/pip install -r bench/requirements.txt`)")
    except Exception as err:  # a broken peer must not hide the other figures
        reason = f"{name} failed: {type(err).__name__}: {err}"
    log(f"  {reason}")
    return {}, reason


def version(module: str) -> str | None:
    """`name version` of an installed distribution, None when it is not installed."""
    try:
        return f"{module} {metadata.version(module)}"
    except metadata.PackageNotFoundError:
        return None


# The JSON rows: figure, unit, better, ferrocell's key, {peer: its key}; `{limit}` and
# `{reps}` are filled in. The peers' names are those the footnotes speak of.
JSON_ROWS = [
    ("primes below {limit:,}, one thread", "s", "lower", "rust_1",
     {"CPython": "py_1", "Numba `@njit`": "numba_1"}),
    ("primes below {limit:,}, `%%parallel threads 2`", "s", "lower", "rust_threads2",
     {"CPython `threading`, 2 threads": "py_threads2",
      "Numba `prange`, 2 threads": "numba_prange2"}),
    ("primes below {limit:,}, `%%parallel threads 2 --each` over the blocks", "s", "lower",
     "rust_threads_each2", {}),
    ("primes below {limit:,}, `%%parallel processes 2`", "s", "lower", "rust_processes2",
     {"CPython `multiprocessing.Pool(2)`": "py_pool2",
      "ipyparallel, 2 engines (DirectView map)": "ipp_2"}),
    ("primes below {limit:,}, `%%parallel processes 2 --each` over the blocks", "s", "lower",
     "rust_processes_each2", {}),
    ("empty `%%parallel threads 2`: the run (median of {reps})", "s", "lower",
     "empty_threads", {}),
    ("empty `%%parallel threads 2`: request to idle (median of {reps})", "s", "lower",
     "empty_threads_trip", {}),
    ("empty `%%parallel processes 2`: the run (median of {reps})", "s", "lower",
     "empty_processes", {}),
    ("empty `%%parallel processes 2`: request to idle (median of {reps})", "s", "lower",
     "empty_processes_trip", {}),
    ("`%%parallel threads 2 --each` over 100 000 trivial items", "items/s", "higher",
     "items_threads", {}),
    ("`%%parallel processes 2 --each` over 100 000 trivial items", "items/s", "higher",
     "items_processes",
     {"ipyparallel load-balanced map": "ipp_items_default",
      "ipyparallel load-balanced map, chunksize 5000": "ipp_items_chunked"}),
]


def write_json(path: str, f: dict, limit: int, reps: int, missing: dict, cap: float) -> None:
    figures = [json_figure(label.format(limit=limit, reps=reps), unit, better, f.get(key),
                           {peer: f.get(k) for peer, k in peers.items()})
               for label, unit, better, key, peers in JSON_ROWS]
    about = {}
    for peer in (peer for row in JSON_ROWS for peer in row[4]):
        module = peer.split()[0].lower()  # CPython, Numba or ipyparallel
        about[peer] = (f"CPython {sys.version.split()[0]}" if module == "cpython"
                       else version(module))
    write_document(path, "parallel",
                   f"counting the primes below {limit:,} on threads and processes "
                   f"(trial division, blocks of {BLOCK} dealt round-robin)",
                   figures, missing=missing, about=about, context={"capacity": cap})


def prime_options(doc: str) -> tuple[argparse.Namespace, int, int]:
    """The options of the primes benchmarks (this one and bench/cluster.py): the
    arguments, the limit and the repetitions they ask for."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="count the primes below it (default 5000000)")
    parser.add_argument("--quick", action="store_true",
                        help="primes below 1000000 (unless --limit), medians of 5, not 20")
    parser.add_argument("--ferrocell-only", action="store_true",
                        help="skip the peers (a quick rerun of ferrocell's figures)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures there (for bench/run)")
    args = parser.parse_args()
    limit = args.limit or (1_000_000 if args.quick else 5_000_000)
    return args, limit, (5 if args.quick else 20)


def main() -> None:
    args, limit, reps = prime_options(__doc__)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    cap = capacity()
    log(f"machine: two busy processes run {cap:.2f}× as fast as one after the other")
    root = Path(tempfile.mkdtemp(prefix="ferrocell-bench-parallel-"))
    try:
        env = ferrocell_environment(root)
        f = ferrocell(limit, env, reps, log)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    f["items_threads"] = 100_000 / f["each_100k_threads"]
    f["items_processes"] = 100_000 / f["each_100k_processes"]
    missing: dict[str, str] = {}
    peers = [("CPython", cpython, ["CPython", "CPython `threading`, 2 threads",
                                   "CPython `multiprocessing.Pool(2)`"]),
             ("ipyparallel", ipyparallel_figures,
              ["ipyparallel, 2 engines (DirectView map)", "ipyparallel load-balanced map",
               "ipyparallel load-balanced map, chunksize 5000"]),
             ("Numba", numba_figures, ["Numba `@njit`", "Numba `prange`, 2 threads"])]
    for name, measure, shown_as in peers:
        if args.ferrocell_only:
            reason = "left out with --ferrocell-only"
        else:
            figures, reason = peer_figures(name, measure, limit, log)
            f.update(figures)
        if reason:
            missing.update(dict.fromkeys(shown_as, reason))
    if args.json:
        write_json(args.json, f, limit, reps, missing, cap)

    def cell(key: str) -> str:
        return fmt_seconds(f[key]) if key in f else "not measured"

    print(f"Primes below {limit:,} by trial division, blocks of {BLOCK} dealt round-robin:\n")
    print("| how | time | ÷ ferrocell threads 2 |")
    print("|---|---|---|")
    base = f["rust_threads2"]
    for key, label in [
        ("rust_1", "ferrocell, one thread"),
        ("rust_threads2", "ferrocell `%%parallel threads 2`"),
        ("rust_threads_each2", "ferrocell `%%parallel threads 2 --each` over the blocks"),
        ("rust_processes2", "ferrocell `%%parallel processes 2`"),
        ("rust_processes_each2", "ferrocell `%%parallel processes 2 --each` over the blocks"),
        ("py_1", "CPython, one thread"),
        ("py_threads2", "CPython `threading`, 2 threads"),
        ("py_pool2", "CPython `multiprocessing.Pool(2)`"),
        ("ipp_2", "ipyparallel, 2 engines (DirectView map)"),
        ("numba_1", "Numba `@njit`, one thread"),
        ("numba_prange2", "Numba `@njit(parallel=True)`, `prange`, 2 threads"),
    ]:
        ratio = f"{f[key] / base:.1f}×" if key in f else "—"
        print(f"| {label} | {cell(key)} | {ratio} |")
    print(f"\nferrocell threads 2 ÷ one thread: {f['rust_1'] / base:.2f}× speed-up; "
          f"processes 2 ÷ one thread: {f['rust_1'] / f['rust_processes2']:.2f}×")
    print("\n| overhead | figure |")
    print("|---|---|")
    for backend in ("threads", "processes"):
        print(f"| empty `%%parallel {backend} 2`: the run (median of {reps}) | "
              f"{fmt_seconds(f[f'empty_{backend}'])} |")
        print(f"| empty `%%parallel {backend} 2`: request to idle, through the kernel | "
              f"{fmt_seconds(f[f'empty_{backend}_trip'])} |")
    for backend in ("threads", "processes"):
        print(f"| ferrocell `{backend} 2 --each` over 100 000 trivial items | "
              f"{f[f'items_{backend}']:,.0f} items/s |")
    for key, label in [("ipp_items_default", "ipyparallel load-balanced map, default"),
                       ("ipp_items_chunked", "ipyparallel load-balanced map, chunksize 5000")]:
        value = f"{f[key]:,.0f} items/s" if key in f else "not measured"
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
