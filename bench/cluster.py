#!/usr/bin/env python3
"""Cluster benchmark: ferrocell's `%cluster` and `%%parallel cluster` against
ipyparallel with 2 engines, in one run on this machine.

Run it from the repository root after scripts/setup (and, for the peer,
`.venv/bin/pip install -r bench/requirements.txt`):

    .venv/bin/python bench/cluster.py [--limit 5000000] [--quick] [--json PATH]

(bench/run runs it with the other bench scripts and collects `--json`; --quick counts
the primes below 1 000 000 and takes medians of 5 instead of 20.)

Figures, each side by side:

* start until every engine is ready: `%cluster start -n 2` (request to reply) and
  `ipp.Cluster(n=2).start_and_connect_sync()` (until 2 engines are registered);
* the round trip of an empty cell on both engines (median of 20): `%%parallel
  cluster` with `rank`, and a DirectView `execute("pass")` (what `%%px pass` does);
* items per second over 100 000 trivial items: `--each` and a LoadBalancedView
  map (by default on 2000 items, since it is slow, and chunked by hand on all);
* the primes below LIMIT on 2 engines, split in halves of blocks dealt round-robin;
* how soon a background run hands back the notebook (median of REPS): request to
  idle of the notebook cell `%%parallel cluster --noblock` (then `%wait`), and of the
  cell `%%px --noblock` (then `%pxresult`) in an IPython kernel (the `python3`
  kernelspec, ipykernel) whose own `ipp.Cluster(n=2)` is activated there; printed
  after the table (and in the JSON document), ipyparallel's DirectView
  `execute(…, block=False)` as a Python call, returning its AsyncResult (then `get()`).

When ipyparallel is not installed or fails, its column says "not measured" (the JSON
document says why); so does the background run's row alone when only the IPython
kernel fails (the JSON figure's note says why).
"""

from __future__ import annotations

import inspect
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kernel import ferrocell_environment, fmt_seconds, start, stop
from parallel import (BLOCK, IS_PRIME_RS, count_blocks, halves, is_prime, peer_figures,
                      prime_options, run_cell, seconds_in, version)
from results import figure as json_figure, write as write_document


def median_cell(kc, cell: str, reps: int, then: str | None = None) -> float:
    """The median time of the cell `cell`, request to idle, over `reps` runs after
    one warm-up; `then`, if given, runs after each, untimed (`%wait` for a
    background run)."""
    def once() -> float:
        t0 = time.perf_counter()
        run_cell(kc, cell)
        took = time.perf_counter() - t0
        if then:
            run_cell(kc, then)
        return took

    once()
    return statistics.median([once() for _ in range(reps)])


def ferrocell(limit: int, env: dict, reps: int, log) -> dict:
    f = {}
    km, kc, _ = start("ferrocell", env)
    try:
        run_cell(kc, ":dep")
        run_cell(kc, IS_PRIME_RS)
        # One start to build the engines' runner (once per machine), then the measured one.
        run_cell(kc, "%cluster start -n 2")
        run_cell(kc, "%cluster stop")
        t0 = time.perf_counter()
        run_cell(kc, "%cluster start -n 2")
        f["start"] = time.perf_counter() - t0
        f["empty_trip"] = median_cell(kc, "%%parallel cluster\nrank", reps)
        items = "%%parallel cluster --each 0..100_000u64\nitem"
        run_cell(kc, items)
        text = run_cell(kc, items)
        f["items"] = 100_000 / seconds_in(text, r"100000 items on 2 engines in ")
        blocks = limit // BLOCK
        primes = ("%%parallel cluster\n"
                  f"(0..{blocks}u64).filter(|b| b % size as u64 == rank as u64)"
                  f".flat_map(|b| b * {BLOCK}..(b + 1) * {BLOCK}).filter(|&n| is_prime(n)).count()")
        run_cell(kc, primes)
        text = run_cell(kc, primes)
        f["primes"] = seconds_in(text, r"2 ranks on 2 engines in ")
        f["noblock"] = median_cell(kc, "%%parallel cluster --noblock --out bg\nrank", reps,
                                   then="%wait bg")
        run_cell(kc, "%cluster stop")
    finally:
        stop(km, kc)
    log(f"  ferrocell: {f}")
    return f


def ipyparallel_figures(limit: int, reps: int, log) -> dict:
    import ipyparallel as ipp

    f = {}
    cluster = ipp.Cluster(n=2, log_level=40)
    t0 = time.perf_counter()
    try:
        rc = cluster.start_and_connect_sync()
    except BaseException:
        cluster.stop_cluster_sync()
        raise
    try:
        rc.wait_for_engines(2, timeout=120)
        f["start"] = time.perf_counter() - t0
        view = rc[:]
        view.execute("pass", block=True)
        trips = []
        for _ in range(reps):
            t0 = time.perf_counter()
            view.execute("pass", block=True)
            trips.append(time.perf_counter() - t0)
        f["empty_trip"] = statistics.median(trips)
        lview = rc.load_balanced_view()
        t0 = time.perf_counter()
        lview.map_sync(lambda x: x, list(range(2000)))
        f["items"] = 2000 / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        lview.map_sync(lambda x: x, list(range(100_000)), chunksize=5000)
        f["items_chunked"] = 100_000 / (time.perf_counter() - t0)
        # The workload's functions are defined on the engines from their source (they
        # live in bench/parallel.py, which the engines cannot import).
        view.execute("BLOCK = %d\n%s\n%s" % (BLOCK, inspect.getsource(is_prime),
                                            inspect.getsource(count_blocks)), block=True)
        t0 = time.perf_counter()
        sum(view.map_sync(lambda part: count_blocks(part), halves(limit, 2)))  # noqa: F821
        f["primes"] = time.perf_counter() - t0
        returns = []
        for _ in range(reps):
            t0 = time.perf_counter()
            ar = view.execute("rank = 0", block=False)
            returns.append(time.perf_counter() - t0)
            ar.get()
        f["noblock_call"] = statistics.median(returns)
    finally:
        rc.close()
        cluster.stop_cluster_sync()
    log(f"  ipyparallel: {f}")
    return f


def ipyparallel_cells(env: dict, reps: int, log) -> dict:
    """ipyparallel's background run as a notebook cell, measured like ferrocell's: an
    IPython kernel (ipykernel) starts and activates its own cluster of 2 engines, then
    `%%px --noblock` is timed request to idle, and `%pxresult` waits for its result."""
    f = {}
    km, kc, _ = start("python3", env)
    try:
        run_cell(kc, "import ipyparallel as ipp\ncluster = ipp.Cluster(n=2, log_level=40)")
        try:
            run_cell(kc, "rc = cluster.start_and_connect_sync()\n"
                         "rc.wait_for_engines(2, timeout=120)\nrc.activate()")
            f["noblock"] = median_cell(kc, "%%px --noblock\nrank = 0", reps, then="%pxresult")
        finally:
            run_cell(kc, "cluster.stop_cluster_sync()")
    finally:
        stop(km, kc)
    log(f"  ipyparallel in an IPython kernel: {f}")
    return f


# The rows: label, key, unit, better; `{limit}` and `{reps}` are filled in.
ROWS = [
    ("start, until 2 engines are ready", "start", "s", "lower"),
    ("empty cell on both engines, round trip (median of {reps})", "empty_trip", "s", "lower"),
    ("`--each` / LoadBalancedView map, trivial items, no chunking by the user", "items",
     "items/s", "higher"),
    ("primes below {limit:,} on 2 engines", "primes", "s", "lower"),
    ("a background run hands back the notebook: the cell `--noblock` / `%%px --noblock`, "
     "request to idle (median of {reps})", "noblock", "s", "lower"),
]
PEER = "ipyparallel, 2 engines"
CHUNKED = "ipyparallel, chunksize 5000"
CALL = "ipyparallel, execute(block=False) as a Python call"


def write_json(path: str, fc: dict, ip: dict, limit: int, reps: int, reason: str | None,
               cells_reason: str | None) -> None:
    figures = []
    for label, key, unit, better in ROWS:
        peers, note = {PEER: ip.get(key)}, None
        if key == "items":
            peers[CHUNKED] = ip.get("items_chunked")
        if key == "noblock":
            peers[CALL] = ip.get("noblock_call")
            note = cells_reason
        figures.append(json_figure(label.format(limit=limit, reps=reps), unit, better,
                                   fc.get(key), peers, note))
    missing = {PEER: reason, CHUNKED: reason, CALL: reason} if reason else {}
    ipp, ipykernel = version("ipyparallel"), version("ipykernel")
    about = {PEER: f"{ipp} (`%%px` in {ipykernel})" if ipp and ipykernel else ipp,
             CHUNKED: ipp, CALL: ipp}
    write_document(path, "cluster", "`%cluster` and `%%parallel cluster` with 2 engines "
                   "on this machine", figures, missing=missing, about=about)


def main() -> None:
    args, limit, reps = prime_options(__doc__)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # The IPython kernel is started the way ferrocell's is, so the directory stays until then.
    root = Path(tempfile.mkdtemp(prefix="ferrocell-bench-cluster-"))
    try:
        env = ferrocell_environment(root)
        fc = ferrocell(limit, env, reps, log)
        cells_reason = None
        if args.ferrocell_only:
            ip, reason = {}, "left out with --ferrocell-only"
        else:
            ip, reason = peer_figures("ipyparallel",
                                      lambda lim, lg: ipyparallel_figures(lim, reps, lg),
                                      limit, log)
            if not reason:
                cells, cells_reason = peer_figures(
                    "ipyparallel in an IPython kernel",
                    lambda lim, lg: ipyparallel_cells(env, reps, lg), limit, log)
                ip.update(cells)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        write_json(args.json, fc, ip, limit, reps, reason, cells_reason)

    def rate(v):
        return f"{v:,.0f} items/s"

    print("| figure | ferrocell | ipyparallel 2 engines | ipyparallel ÷ ferrocell |")
    print("|---|---|---|---|")
    for label, key, unit, better in ROWS:
        fmt = rate if unit == "items/s" else fmt_seconds
        ours = fmt(fc[key])
        theirs = fmt(ip[key]) if key in ip else "not measured"
        if key in ip:
            ratio = ip[key] / fc[key] if better == "lower" else fc[key] / ip[key]
            ratio = f"{ratio:,.1f}×"
        else:
            ratio = "—"
        print(f"| {label.format(limit=limit, reps=reps)} | {ours} | {theirs} | {ratio} |")
    if "items_chunked" in ip:
        print(f"\nipyparallel's map chunked by hand (chunksize 5000): {rate(ip['items_chunked'])}.")
    if "noblock_call" in ip:
        print(f"ipyparallel's execute(block=False) as a Python call: "
              f"{ip['noblock_call'] * 1000:.2f} ms.")
    if cells_reason:
        print(f"`%%px --noblock` not measured: {cells_reason}")


if __name__ == "__main__":
    main()
