#!/usr/bin/env python3
"""Kernel benchmark: ferrocell against the peer kernels installed here.

Run it from the repository root after scripts/setup:

    .venv/bin/python bench/kernel.py [--quick] [--json PATH]

(bench/run runs it with the other bench scripts and collects `--json`.)

Everything is measured the way a notebook client sees it, with jupyter_client
over ZeroMQ:

* start: from starting the kernel process to a ready client (kernel_info_reply
  answered, IOPub flowing), median of several starts, warm compile cache;
* first cell: the first cell of a fresh kernel (execute_request to
  execute_reply), median over those starts;
* warm cell: `N + 1` with a new N each time, median;
* re-run: the same unchanged cell again, median;
* 2nd vs last cell of a session where every cell defines a new function and
  calls it: does a cell's cost grow with the session?
* idle memory: resident memory of the kernel and all its child processes;
* completion: complete_request → complete_reply after `expr.` and `Type::` (median
  and 90th percentile), then idle memory again a quiet minute later.

Peers: evcxr (a kernelspec named `evcxr`, or one that runs evcxr_jupyter) and
ipykernel (`python3`) when they are installed; otherwise "not measured" (with the
reason in the JSON document).
The ferrocell kernel measured is target/release/ferrocell, with a private
cache and history directory that are removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from queue import Empty

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from results import figure as json_figure, write as write_document

REPO = Path(__file__).resolve().parents[1]
BINARY = REPO / "target" / "release" / "ferrocell"
TIMEOUT = 300

RUST = {
    "first": "{n} * 2",
    "trivial": "{n} + 1",
    "rerun": "let v: Vec<u64> = (1..=100).collect();\nv.iter().sum::<u64>()",
    "fn": "fn f_{i}() -> usize {{ {i} }}\nf_{i}() + 1",
    "vars_setup": "let mut a: i64 = 0;\nlet mut b: Vec<i64> = Vec::new();\nlet mut c: u64 = 1;",
    "vars3": "a += {n};\nb.push(a);\nc = c * 2 % 1000003;",
    "new_var": "let x_{n} = vec![{n}u64];",
    "complete_setup": "fn names() -> Vec<String> {{ vec![] }}",
    # Completions after `expr.` or `Type::`, each a different expression.
    "complete": ["names().res", "b.it", "vec![1u8, 2].it", "names().iter().ma",
                 "String::with", "names().len().pow"],
}
# ferrocell's warm-up also waits for its one-time serde build (snapshots).
FERROCELL = dict(RUST, warm=":dep")
PYTHON = {
    "first": "{n} * 2",
    "trivial": "{n} + 1",
    "rerun": "v = list(range(1, 101))\nsum(v)",
    "fn": "def f_{i}():\n    return {i}\nf_{i}() + 1",
    "vars_setup": "a = 0\nb = []\nc = 1",
    "vars3": "a += {n}\nb.append(a)\nc = c * 2 % 1000003",
    "new_var": "x_{n} = [{n}]",
    "complete_setup": "def names():\n    return []",
    "complete": ["names().ext", "b.app", "[1, 2].co", "iter(names()).__ne",
                 "str.spl", "len(names()).bit"],
}


class CellFailed(RuntimeError):
    pass


# --- talking to a kernel -------------------------------------------------------------


def start(name: str, env: dict) -> tuple[KernelManager, object, float]:
    km = KernelManager(kernel_name=name)
    t0 = time.perf_counter()
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    return km, kc, time.perf_counter() - t0


def stop(km: KernelManager, kc) -> None:
    try:
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=False)


def execute(kc, code: str) -> float:
    """Seconds from execute_request to execute_reply; waits for idle afterwards."""
    t0 = time.perf_counter()
    msg_id = kc.execute(code, allow_stdin=False)
    deadline = t0 + TIMEOUT
    while True:
        reply = kc.get_shell_msg(timeout=max(0.0, deadline - time.perf_counter()))
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    elapsed = time.perf_counter() - t0
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.0, deadline - time.perf_counter()))
        except Empty:
            break
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    if reply["content"]["status"] != "ok":
        content = reply["content"]
        raise CellFailed(f"{code!r}: {content.get('ename')}: {content.get('evalue')}")
    return elapsed


def tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
    pids, frontier = [pid], [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in pids:
                pids.append(child)
                frontier.append(child)
    return pids


def tree_memory_mib(pid: int, measure: str = "rss") -> float:
    """The memory of `pid`'s process tree: resident set size ("rss"), or
    proportional set size ("pss": a page that forked processes share counts once)."""
    path, field = ("status", "VmRSS:") if measure == "rss" else ("smaps_rollup", "Pss:")
    total_kib = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/{path}").read_text().splitlines():
                if line.startswith(field):
                    total_kib += int(line.split()[1])
        except OSError:
            pass
    return total_kib / 1024


# --- one kernel's figures ------------------------------------------------------------


def measure(name: str, codes: dict, env: dict, reps: dict, log) -> dict:
    figures: dict[str, float | str] = {}
    fresh = random.Random()

    def new_n() -> int:
        return fresh.randrange(10**5, 10**8)  # fits an i32, doubled too

    # Warm whatever cache the kernel has (ferrocell's prelude and serde build,
    # evcxr's build dir).
    km, kc, _ = start(name, env)
    try:
        info = kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]
        figures["version"] = (f"{info.get('implementation', name)} "
                              f"{info.get('implementation_version', '?')}")
        if info.get("implementation") == "ipython":  # ipykernel names IPython's version
            figures["version"] = f"ipykernel {metadata.version('ipykernel')} ({figures['version']})"
        if "warm" in codes:
            execute(kc, codes["warm"])
        execute(kc, codes["trivial"].format(n=new_n()))
    finally:
        stop(km, kc)

    starts, firsts = [], []
    for _ in range(reps["starts"]):
        km, kc, elapsed = start(name, env)
        starts.append(elapsed)
        try:
            firsts.append(execute(kc, codes["first"].format(n=new_n())))
        finally:
            stop(km, kc)
    figures["start"] = statistics.median(starts)
    figures["first"] = statistics.median(firsts)
    log(f"  {name}: start {figures['start']:.3f} s, first cell {figures['first']:.3f} s")

    km, kc, _ = start(name, env)
    try:
        execute(kc, codes["trivial"].format(n=new_n()))
        figures["trivial"] = statistics.median(
            execute(kc, codes["trivial"].format(n=new_n())) for _ in range(reps["cells"]))
        execute(kc, codes["rerun"])
        figures["rerun"] = statistics.median(
            execute(kc, codes["rerun"]) for _ in range(reps["cells"]))
        execute(kc, codes["vars_setup"])
        figures["vars3"] = statistics.median(
            execute(kc, codes["vars3"].format(n=new_n())) for _ in range(reps["cells"]))
        figures["vars3_ratio"] = figures["vars3"] / figures["trivial"]
        figures["new_var"] = statistics.median(
            execute(kc, codes["new_var"].format(n=new_n())) for _ in range(reps["cells"]))
        time.sleep(1.0)
        figures["memory"] = tree_memory_mib(km.provisioner.process.pid)
        # Completion: each request's round trip, then memory after a quiet minute.
        execute(kc, codes["complete_setup"].format())
        latencies = []
        for _ in range(max(1, reps["cells"] // len(codes["complete"]))):
            for code in codes["complete"]:
                t0 = time.perf_counter()
                reply = kc.complete(code, len(code), reply=True, timeout=TIMEOUT)
                latencies.append(time.perf_counter() - t0)
                if not reply["content"]["matches"]:
                    log(f"  {name}: no completion for {code!r}")
        latencies.sort()
        figures["complete"] = statistics.median(latencies)
        figures["complete_p90"] = latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))]
        time.sleep(reps["idle"])
        figures["memory_completed"] = tree_memory_mib(km.provisioner.process.pid)
    finally:
        stop(km, kc)
    log(f"  {name}: warm cell {figures['trivial']:.3f} s, re-run {figures['rerun']:.3f} s, "
        f"memory {figures['memory']:.1f} MiB")

    km, kc, _ = start(name, env)
    try:
        times = [execute(kc, codes["fn"].format(i=i)) for i in range(1, reps["session"] + 1)]
    finally:
        stop(km, kc)
    # One cell is a noisy sample: take the median of five around each end.
    figures["second"] = statistics.median(times[1:6])
    figures["last"] = statistics.median(times[-5:])
    figures["growth"] = figures["last"] / figures["second"]
    log(f"  {name}: cells 2-6 {figures['second']:.3f} s, last 5 {figures['last']:.3f} s "
        f"(every cell: {' '.join(f'{t * 1000:.0f}' for t in times)} ms)")
    return figures


# --- finding the kernels -------------------------------------------------------------


def measure_kernels(kernels, only, results: dict, reasons: dict, log) -> None:
    """Measures each `(label, kernelspec name or None, measure(name))` into
    `results[label]`, or says in `reasons[label]` why it has no figures: left out
    with --only, no kernelspec found, or failed (a broken peer must not hide the
    other figures)."""
    for label, name, measure_one in kernels:
        if only and label not in only:
            results[label] = "not measured"
            reasons[label] = "left out with --only"
            continue
        if name is None:
            results[label] = "not measured"
            reasons[label] = (f"no {label} kernelspec found by `jupyter kernelspec list`"
                              + (" (none named evcxr or running evcxr_jupyter)"
                                 if label == "evcxr" else " (python3 running ipykernel)"))
            continue
        log(f"measuring {label} (kernelspec {name})")
        try:
            results[label] = measure_one(name)
        except Exception as err:
            log(f"  {label} failed: {err}")
            results[label] = "failed"
            reasons[label] = f"failed: {type(err).__name__}: {err}"


def ferrocell_environment(root: Path) -> dict:
    """Install the current build's kernelspec privately; return the environment to use."""
    if not BINARY.is_file():
        sys.exit(f"{BINARY} not found: run scripts/setup (or cargo build --release) first")
    prefix = root / "prefix"
    subprocess.run([str(BINARY), "install", "--prefix", str(prefix)], check=True,
                   capture_output=True)
    for sub in ("cache", "data", "runtime"):
        (root / sub).mkdir()
    env = dict(os.environ)
    jupyter_path = [str(prefix / "share" / "jupyter"), str(REPO / ".venv" / "share" / "jupyter")]
    if env.get("JUPYTER_PATH"):
        jupyter_path.append(env["JUPYTER_PATH"])
    env["JUPYTER_PATH"] = os.pathsep.join(jupyter_path)
    env["JUPYTER_RUNTIME_DIR"] = str(root / "runtime")
    env["FERROCELL_CACHE"] = str(root / "cache")
    env["FERROCELL_DATA_DIR"] = str(root / "data")
    # jupyter_client reads JUPYTER_PATH from this process's environment.
    os.environ.update({k: env[k] for k in ("JUPYTER_PATH", "JUPYTER_RUNTIME_DIR")})
    return env


def find_peers() -> dict[str, str | None]:
    specs = KernelSpecManager().get_all_specs()
    evcxr = None
    if "evcxr" in specs:
        evcxr = "evcxr"
    else:
        for name, info in specs.items():
            argv = info["spec"].get("argv", [])
            if argv and "evcxr" in Path(argv[0]).name:
                evcxr = name
                break
    ipykernel = None
    if "python3" in specs:
        argv = " ".join(specs["python3"]["spec"].get("argv", []))
        if "ipykernel" in argv:
            ipykernel = "python3"
    return {"evcxr": evcxr, "ipykernel": ipykernel}


# --- the table -----------------------------------------------------------------------


def fmt_seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def ratio_peer(results: dict[str, dict | str | None]) -> str | None:
    """The peer the ratio column compares with: evcxr (the same job, compiling Rust)
    when it was measured, else ipykernel."""
    for peer in ("evcxr", "ipykernel"):
        if isinstance(results.get(peer), dict):
            return peer
    return None


# The table's rows: label, key in a kernel's figures, unit (every figure: lower is better).
ROWS = [
    ("start → kernel_info_reply (median of {starts})", "start", "s"),
    ("first cell (median of {starts})", "first", "s"),
    ("warm cell `N + 1` (median of {cells})", "trivial", "s"),
    ("re-run of an unchanged cell (median of {cells})", "rerun", "s"),
    ("cell reading and updating 3 session variables (median of {cells})", "vars3", "s"),
    ("… that cell ÷ the warm `N + 1` cell", "vars3_ratio", "×"),
    ("cell defining a new variable (median of {cells})", "new_var", "s"),
    ("2nd cell of a session (fn item + call; median of cells 2–6)", "second", "s"),
    ("{session}th cell of a session (median of the last 5)", "last", "s"),
    ("{session}th ÷ 2nd cell", "growth", "×"),
    ("idle memory, kernel + children", "memory", "MiB"),
    ("completion after `expr.` / `Type::` (median of {completions})", "complete", "s"),
    ("… 90th percentile", "complete_p90", "s"),
    ("idle memory {idle} s after those completions, kernel + children", "memory_completed",
     "MiB"),
]
SHOW = {"s": fmt_seconds, "×": lambda v: f"{v:.2f}×", "MiB": lambda v: f"{v:.0f} MiB"}
PEERS = ("evcxr", "ipykernel")


def table(results: dict[str, dict | str | None], reps: dict) -> str:
    out = ["| figure | ferrocell | evcxr | ipykernel | ratio |", "|---|---|---|---|---|"]
    for label, key, unit in ROWS:
        show = SHOW[unit]
        cells = []
        for kernel in ("ferrocell", "evcxr", "ipykernel"):
            res = results.get(kernel)
            if isinstance(res, dict) and key in res:
                cells.append(show(res[key]))
            elif isinstance(res, str):
                cells.append(res)
            else:
                cells.append("not measured")
        ours, peer = results.get("ferrocell"), results.get(ratio_peer(results) or "")
        if (isinstance(ours, dict) and isinstance(peer, dict) and key in ours and key in peer
                and ours[key] > 0):
            ratio = f"{peer[key] / ours[key]:.1f}×"
        else:
            ratio = "—"
        out.append(f"| {label.format(**reps)} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(out)


def write_json(path: str, results: dict, reasons: dict, reps: dict) -> None:
    """The same figures for bench/run: one row per figure, evcxr and ipykernel as peers."""

    def value(kernel: str, key: str):
        res = results.get(kernel)
        return res.get(key) if isinstance(res, dict) else None

    figures = [json_figure(label.format(**reps), unit, "lower", value("ferrocell", key),
                           {peer: value(peer, key) for peer in PEERS})
               for label, key, unit in ROWS]
    about = {k: r["version"] for k, r in results.items() if isinstance(r, dict) and "version" in r}
    write_document(path, "kernel", "kernel start, cells and memory, as a client sees them",
                   figures, missing=reasons, about=about)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", action="append", choices=["ferrocell", "evcxr", "ipykernel"],
                        help="measure only this kernel (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures there (for bench/run)")
    args = parser.parse_args()
    reps = ({"starts": 2, "cells": 5, "session": 20, "idle": 10} if args.quick
            else {"starts": 5, "cells": 20, "session": 100, "idle": 60})
    reps["completions"] = max(1, reps["cells"] // 6) * 6

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    root = Path(tempfile.mkdtemp(prefix="ferrocell-bench-"))
    try:
        env = ferrocell_environment(root)
        peers = find_peers()
        results: dict[str, dict | str | None] = {}
        reasons: dict[str, str] = {}  # why a kernel's figures are missing
        kernels = [("ferrocell", "ferrocell", FERROCELL), ("evcxr", peers["evcxr"], RUST),
                   ("ipykernel", peers["ipykernel"], PYTHON)]
        measure_kernels([(label, name, lambda name, codes=codes: measure(name, codes, env, reps, log))
                         for label, name, codes in kernels], args.only, results, reasons, log)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    if args.json:
        write_json(args.json, results, reasons, reps)

    print(table(results, reps))
    print()
    peer = ratio_peer(results)
    if peer:
        print(f"ratio: {peer}'s figure ÷ ferrocell's (above 1×: ferrocell is faster or "
              "smaller).")
    print("Times are execute_request → execute_reply as a client sees them; "
          f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'full'} run.")


if __name__ == "__main__":
    main()
