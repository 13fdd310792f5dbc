#!/usr/bin/env python3
"""Hostile-input benchmark: what heavy values, floods and stalled peers cost.

Run it from the repository root after scripts/setup:

    .venv/bin/python bench/hostile.py [--quick] [--json PATH]

(bench/run runs it with the other bench scripts and collects `--json`.)

Measured through jupyter_client over ZeroMQ, against ferrocell and ipykernel (the
peer; "not measured" when it is not installed):

* a cell that changes one element of a 2 GB variable, and the trivial cell after it,
  new (compiled) and again (cached), with ferrocell's snapshots on and off
  (ipykernel keeps no snapshots); then, over more such cells, the peak memory of
  the kernel's process tree (proportional set size, so that pages a forked saver
  shares are counted once);
* the kernel's memory while a thread the cell left running prints for 60 s
  (15 s with --quick) and the client reads;
* the time to answer `N + 1` while a second client subscribes to IOPub and never
  reads, after a cell that printed 50 MB;
* the time for a cell that writes 10 MB of invalid UTF-8, and one that writes
  5 million lines in one write.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel import (  # noqa: E402
    TIMEOUT, CellFailed, execute, ferrocell_environment, find_peers, stop, tree_memory_mib,
)
from jupyter_client.manager import KernelManager  # noqa: E402
from results import figure, write as write_document  # noqa: E402

CODE = {
    "ferrocell": {
        "big": "let mut big: Vec<u64> = vec![7; 250_000_000];\nbig.len()",
        "mutate": "big[{n}] += 1;",
        "trivial": "{n} + 1",
        "printer": 'std::thread::spawn(|| loop { println!("{}", "tick ".repeat(20)); });',
        "flood": 'print!("{}", "0123456789abcdef\\n".repeat(3_000_000));',
        "binary": "{ use std::io::Write; std::io::stdout().write_all(&vec![0xffu8; 10_000_000]).unwrap(); }",
        "lines": 'print!("{}", "x\\n".repeat(5_000_000));',
    },
    "ipykernel": {
        "big": "big = bytearray(2_000_000_000)\nlen(big)",
        "mutate": "big[{n}] = (big[{n}] + 1) % 256",
        "trivial": "{n} + 1",
        "printer": "import threading\nthreading.Thread(target=lambda: [print('tick ' * 20) for _ in iter(int, 1)], daemon=True).start()",
        "flood": "print('0123456789abcdef\\n' * 3_000_000, end='')",
        # ipykernel's streams take text: the same bytes, as Latin-1.
        "binary": "print((b'\\xff' * 10_000_000).decode('latin-1'), end='')",
        "lines": "print('x\\n' * 5_000_000, end='')",
    },
}


def start(name: str, env: dict):
    """A kernel whose own stdout and stderr (not its cells') go nowhere."""
    km = KernelManager(kernel_name=name)
    km.start_kernel(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    return km, kc, None


class Peak:
    """Samples a process tree's memory every 50 ms until stopped; keeps the peak."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, tree_memory_mib(self.pid, "pss"))
            time.sleep(0.05)

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return self.peak


def big_variable(kernel: str, env: dict, code: dict, log, label: str) -> dict:
    km, kc, _ = start(kernel, env)
    try:
        if kernel == "ferrocell":
            execute(kc, ":dep")  # serde built: snapshots on from the first cell
        execute(kc, "1")
        base = tree_memory_mib(km.provisioner.pid, "pss")
        execute(kc, code["big"])
        time.sleep(3)  # its own snapshot, if any, is written
        # New cells each time (compiled, as in a notebook), then the same cells again
        # (cached: only running them), each pair sent as soon as the last one ended.
        # Timed without the memory sampler: reading smaps walks the page tables of
        # every process in the tree, which competes for the CPUs and the memory map.
        fresh = 1000 if "off" in label else 2000
        mutate, trivial, again_mutate, again_trivial = [], [], [], []
        for n in range(3):
            mutate.append(execute(kc, code["mutate"].format(n=fresh + n)))
            trivial.append(execute(kc, code["trivial"].format(n=fresh + n)))
        for n in range(3):
            again_mutate.append(execute(kc, code["mutate"].format(n=fresh + n)))
            again_trivial.append(execute(kc, code["trivial"].format(n=fresh + n)))
        # Then the peak memory over the same kind of cells, new ones again.
        time.sleep(3)
        peak = Peak(km.provisioner.pid)
        for n in range(3, 6):
            execute(kc, code["mutate"].format(n=fresh + n))
            execute(kc, code["trivial"].format(n=fresh + n))
        time.sleep(3)
        top = peak.stop()
        log(f"  {label}: mutate {mutate}, trivial {trivial}, cached mutate {again_mutate}, "
            f"cached trivial {again_trivial}, peak {top:.0f} MiB (base {base:.0f})")
        return {"mutate": sorted(mutate)[1], "trivial": sorted(trivial)[1],
                "cached mutate": sorted(again_mutate)[1],
                "cached trivial": sorted(again_trivial)[1], "peak": top - base}
    finally:
        stop(km, kc)


def printer_memory(kernel: str, env: dict, code: dict, seconds: int, log) -> float:
    km, kc, _ = start(kernel, env)
    try:
        execute(kc, "1")
        execute(kc, code["printer"])
        top, end = 0.0, time.time() + seconds
        while time.time() < end:
            while True:  # the client reads what comes
                try:
                    kc.get_iopub_msg(timeout=0.01)
                except Exception:
                    break
            top = max(top, tree_memory_mib(km.provisioner.pid, "pss"))
        t = execute(kc, "2")
        log(f"  {kernel}: peak {top:.0f} MiB while a thread printed for {seconds} s; a cell then took {t:.2f} s")
        return top
    finally:
        stop(km, kc)


def stalled_subscriber(kernel: str, env: dict, code: dict, log) -> float:
    km, kc, _ = start(kernel, env)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        info = km.get_connection_info()
        sub.setsockopt(zmq.RCVBUF, 4096)
        sub.setsockopt(zmq.RCVHWM, 1)
        sub.connect(f"{info['transport']}://{info['ip']}:{info['iopub_port']}")
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        time.sleep(0.5)
        # The cells measured are compiled first: what is measured is the waiting.
        for n in range(5):
            execute(kc, code["trivial"].format(n=n))
        execute(kc, code["flood"])
        times = [execute(kc, code["trivial"].format(n=n)) for n in range(5)]
        log(f"  {kernel}: N + 1 with a stalled subscriber: {times}")
        return sorted(times)[2]
    finally:
        sub.close(linger=0)
        ctx.term()
        stop(km, kc)


def output_times(kernel: str, env: dict, code: dict, log) -> dict:
    km, kc, _ = start(kernel, env)
    try:
        execute(kc, "1")
        binary = execute(kc, code["binary"])
        lines = execute(kc, code["lines"])
        log(f"  {kernel}: 10 MB binary {binary:.2f} s, 5 M lines {lines:.2f} s")
        return {"binary": binary, "lines": lines}
    finally:
        stop(km, kc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    seconds = 15 if args.quick else 60
    with tempfile.TemporaryDirectory(prefix="ferrocell-bench-") as root:
        env = ferrocell_environment(Path(root))
        off = dict(env, FERROCELL_SNAPSHOTS="off")
        peer = "python3" if find_peers().get("ipykernel") else None
        missing = {} if peer else {"ipykernel": "not installed"}
        f, p = CODE["ferrocell"], CODE["ipykernel"]

        def both(what, fn, *a):
            log(what)
            mine = fn("ferrocell", env, f, *a, log)
            theirs = None
            if peer:
                try:
                    theirs = fn(peer, env, p, *a, log)
                except (CellFailed, RuntimeError) as e:
                    log(f"  ipykernel failed: {e}")
            return mine, theirs

        log("a 2 GB variable, snapshots on, off, and ipykernel")
        on = big_variable("ferrocell", env, f, log, "ferrocell, snapshots on")
        no = big_variable("ferrocell", off, f, log, "ferrocell, snapshots off")
        py = big_variable(peer, env, p, log, "ipykernel") if peer else None
        printer = both(f"a thread printing for {seconds} s", printer_memory, seconds)
        stall = both("a subscriber that never reads", stalled_subscriber)
        outputs = both("floods of output", output_times)

    def pv(d, k):
        return {"ipykernel": d[k] if d else None}

    rows = [
        figure("2 GB variable: cell changing one element, snapshots on", "s", "lower",
               on["mutate"], pv(py, "mutate"), f"snapshots off: {no['mutate']:.3f} s"),
        figure("2 GB variable: the trivial cell after it, snapshots on", "s", "lower",
               on["trivial"], pv(py, "trivial"), f"snapshots off: {no['trivial']:.3f} s"),
        figure("2 GB variable: the changing cell again (cached), snapshots on", "s",
               "lower", on["cached mutate"], pv(py, "cached mutate"),
               f"snapshots off: {no['cached mutate']:.3f} s"),
        figure("2 GB variable: the trivial cell again (cached), snapshots on", "s",
               "lower", on["cached trivial"], pv(py, "cached trivial"),
               f"snapshots off: {no['cached trivial']:.3f} s"),
        figure("2 GB variable: peak memory above the kernel's start, snapshots on", "MiB",
               "lower", on["peak"], pv(py, "peak"), f"snapshots off: {no['peak']:.0f} MiB"),
        figure(f"peak memory while a thread prints for {seconds} s", "MiB", "lower",
               printer[0], {"ipykernel": printer[1]}),
        figure("N + 1 while a subscriber stalls", "s", "lower", stall[0],
               {"ipykernel": stall[1]}),
        figure("10 MB of binary output", "s", "lower", outputs[0]["binary"],
               {"ipykernel": outputs[1]["binary"] if outputs[1] else None}),
        figure("5 M lines in one write", "s", "lower", outputs[0]["lines"],
               {"ipykernel": outputs[1]["lines"] if outputs[1] else None}),
    ]
    print(f"{'figure':<70} {'ferrocell':>10} {'ipykernel':>10}")
    for r in rows:
        peer_value = r["peers"].get("ipykernel")
        print(f"{r['figure']:<70} {r['ferrocell']:>10.3f} "
              f"{peer_value if peer_value is None else round(peer_value, 3)!s:>10}"
              + (f"  ({r['note']})" if r["note"] else ""))
    if args.json:
        write_document(args.json, "hostile", "Heavy values, floods and stalled peers", rows,
                       missing)


if __name__ == "__main__":
    main()
