#!/usr/bin/env python3
"""Native-speed benchmark: the lecture's compute workloads in ferrocell, next to Numba.

Run it from the repository root after scripts/setup (and, for the peers,
`.venv/bin/pip install -r bench/requirements.txt`):

    .venv/bin/python bench/native.py [--quick] [--json PATH]

(bench/run runs it with the other bench scripts and collects `--json`.)

The workloads, written the same way in Rust and in Python for Numba:

* primes: count the primes below LIMIT by trial division;
* π: Monte Carlo with a xorshift generator, SAMPLES points;
* Mandelbrot: iterations summed over a W×H grid (at most 256 each);
* n-body: STEPS steps of five softened bodies.

ferrocell, in one fresh kernel at its default settings: the functions are defined in
one cell and each is called from three later cells with `%time` (the wall time of the
run, compile apart). The first call runs at level 1; a run over 100 ms makes the
function hot, and the cells after it are built at level 3 (tiered compilation): the
table shows the first call, the third, and the compile time of the second (the
tier-up's cost). Then `%opt 3` pinned, in the same kernel. `%%parallel threads 2` on
the primes (blocks of 1000 dealt round-robin) is called three times the same way.

Numba: `@njit` (the first call compiles; the third is shown), and `@njit(parallel=True)`
with `prange` on 2 threads for the primes (blocks dealt the same way).

A peer that is not installed or fails is "not measured"; the JSON document says why.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from kernel import ferrocell_environment, fmt_seconds, start, stop
from parallel import run_cell, seconds_in
from results import figure as json_figure, write as write_document

BLOCK = 1000

RUST = r"""
fn count_primes(limit: u64) -> usize {
    fn is_prime(n: u64) -> bool {
        if n < 2 { return false; }
        let mut d = 2;
        while d * d <= n { if n % d == 0 { return false; } d += 1; }
        true
    }
    (0..limit).filter(|&n| is_prime(n)).count()
}

fn monte_carlo_pi(samples: u64) -> f64 {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut inside = 0u64;
    for _ in 0..samples {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        let x = (s >> 11) as f64 / 9007199254740992.0;
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        let y = (s >> 11) as f64 / 9007199254740992.0;
        if x * x + y * y <= 1.0 { inside += 1; }
    }
    4.0 * inside as f64 / samples as f64
}

fn mandelbrot(w: u64, h: u64) -> u64 {
    let mut total = 0u64;
    for j in 0..h {
        for i in 0..w {
            let cx = -2.0 + 3.0 * i as f64 / w as f64;
            let cy = -1.5 + 3.0 * j as f64 / h as f64;
            let (mut x, mut y, mut k) = (0.0f64, 0.0f64, 0u64);
            while k < 256 && x * x + y * y <= 4.0 {
                let t = x * x - y * y + cx;
                y = 2.0 * x * y + cy;
                x = t;
                k += 1;
            }
            total += k;
        }
    }
    total
}

fn nbody(steps: u64) -> f64 {
    let mut p = [[0.0f64; 3]; 5];
    let mut v = [[0.0f64; 3]; 5];
    let mut m = [0.0f64; 5];
    for i in 0..5 {
        let f = i as f64;
        p[i] = [f, 0.5 * f * f, 0.1 * f];
        v[i] = [0.0, 0.01 * f, 0.0];
        m[i] = 1.0 + f;
    }
    let dt = 0.001;
    for _ in 0..steps {
        for i in 0..5 {
            for j in (i + 1)..5 {
                let d = [p[i][0] - p[j][0], p[i][1] - p[j][1], p[i][2] - p[j][2]];
                let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + 0.01;
                let mag = dt / (d2 * d2.sqrt());
                for k in 0..3 {
                    v[i][k] -= d[k] * m[j] * mag;
                    v[j][k] += d[k] * m[i] * mag;
                }
            }
        }
        for i in 0..5 {
            for k in 0..3 { p[i][k] += dt * v[i][k]; }
        }
    }
    p[0][0] + p[0][1] + p[0][2]
}
"""

PYTHON = '''
import numpy as np
from numba import njit, prange

@njit
def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True

@njit
def count_primes(limit):
    c = 0
    for n in range(limit):
        if is_prime(n):
            c += 1
    return c

@njit(parallel=True)
def count_primes_prange(limit, block, parts):
    blocks = limit // block
    counts = np.zeros(parts, dtype=np.int64)
    for r in prange(parts):
        c = 0
        for b in range(r, blocks, parts):
            for n in range(b * block, (b + 1) * block):
                if is_prime(n):
                    c += 1
        counts[r] = c
    return counts.sum()

@njit
def monte_carlo_pi(samples):
    s = np.uint64(0x9E3779B97F4A7C15)
    inside = 0
    for _ in range(samples):
        s ^= s << np.uint64(13); s ^= s >> np.uint64(7); s ^= s << np.uint64(17)
        x = (s >> np.uint64(11)) / 9007199254740992.0
        s ^= s << np.uint64(13); s ^= s >> np.uint64(7); s ^= s << np.uint64(17)
        y = (s >> np.uint64(11)) / 9007199254740992.0
        if x * x + y * y <= 1.0:
            inside += 1
    return 4.0 * inside / samples

@njit
def mandelbrot(w, h):
    total = 0
    for j in range(h):
        for i in range(w):
            cx = -2.0 + 3.0 * i / w
            cy = -1.5 + 3.0 * j / h
            x = 0.0; y = 0.0; k = 0
            while k < 256 and x * x + y * y <= 4.0:
                t = x * x - y * y + cx
                y = 2.0 * x * y + cy
                x = t
                k += 1
            total += k
    return total

@njit
def nbody(steps):
    p = np.zeros((5, 3)); v = np.zeros((5, 3)); m = np.zeros(5)
    for i in range(5):
        f = float(i)
        p[i, 0] = f; p[i, 1] = 0.5 * f * f; p[i, 2] = 0.1 * f
        v[i, 1] = 0.01 * f
        m[i] = 1.0 + f
    dt = 0.001
    for _ in range(steps):
        for i in range(5):
            for j in range(i + 1, 5):
                d0 = p[i, 0] - p[j, 0]; d1 = p[i, 1] - p[j, 1]; d2_ = p[i, 2] - p[j, 2]
                d2 = d0 * d0 + d1 * d1 + d2_ * d2_ + 0.01
                mag = dt / (d2 * np.sqrt(d2))
                v[i, 0] -= d0 * m[j] * mag; v[j, 0] += d0 * m[i] * mag
                v[i, 1] -= d1 * m[j] * mag; v[j, 1] += d1 * m[i] * mag
                v[i, 2] -= d2_ * m[j] * mag; v[j, 2] += d2_ * m[i] * mag
        for i in range(5):
            for k in range(3):
                p[i, k] += dt * v[i, k]
    return p[0, 0] + p[0, 1] + p[0, 2]
'''


def workloads(quick: bool) -> dict[str, tuple[str, str]]:
    """Name → (Rust call, Python call), the same work."""
    limit, samples, (w, h), steps = ((1_000_000, 10_000_000, (300, 200), 200_000) if quick
                                     else (3_000_000, 40_000_000, (600, 400), 1_000_000))
    return {
        f"primes below {limit:,}": (f"count_primes({limit})", f"count_primes({limit})"),
        f"π from {samples:,} samples": (f"monte_carlo_pi({samples})", f"monte_carlo_pi({samples})"),
        f"Mandelbrot {w}×{h}": (f"mandelbrot({w}, {h})", f"mandelbrot({w}, {h})"),
        f"n-body, {steps:,} steps": (f"nbody({steps})", f"nbody({steps})"),
    }


def ferrocell(work: dict, limit: int, env: dict, log) -> dict:
    figures = {}
    km, kc, _ = start("ferrocell", env)
    try:
        run_cell(kc, ":dep")
        run_cell(kc, RUST)
        for name, (call, _) in work.items():
            texts = [run_cell(kc, f"%time {call} // call {k}") for k in (1, 2, 3)]
            figures[name] = {
                "first": seconds_in(texts[0], "Wall time: "),
                "third": seconds_in(texts[2], "Wall time: "),
                "tier_compile": seconds_in(texts[1], "Compile time: "),
                "tiered": "tiered up" in texts[2],
            }
            log(f"  ferrocell {name}: {figures[name]}")
        # %%parallel threads on the primes, each rank testing its blocks.
        blocks = limit // BLOCK
        body = (f"(0..{blocks}u64).filter(|b| b % size as u64 == rank as u64)"
                f".flat_map(|b| b * {BLOCK}..(b + 1) * {BLOCK}).filter(|&n| is_prime_rs(n)).count()")
        run_cell(kc, "fn is_prime_rs(n: u64) -> bool { if n < 2 { return false; } let mut d = 2; "
                     "while d * d <= n { if n % d == 0 { return false; } d += 1; } true }")
        runs = []
        for k in (1, 2, 3):
            text = run_cell(kc, f"%%parallel threads 2\n// call {k}\n{body}")
            runs.append(seconds_in(text, r"2 ranks on 2 threads in "))
        figures["threads"] = {"first": runs[0], "third": runs[2]}
        log(f"  ferrocell threads 2: {runs}")
        run_cell(kc, "%opt 3")
        for name, (call, _) in work.items():
            text = run_cell(kc, f"%time {call} // pinned")
            figures[name]["opt3"] = seconds_in(text, "Wall time: ")
        text = run_cell(kc, f"%%parallel threads 2\n// pinned\n{body}")
        figures["threads"]["opt3"] = seconds_in(text, r"2 ranks on 2 threads in ")
    finally:
        stop(km, kc)
    return figures


def numba(work: dict, limit: int, log) -> dict | str:
    try:
        import numba as _  # noqa: F401
    except ImportError:
        return "numba is not installed (pip install -r bench/requirements.txt)"
    os.environ.setdefault("NUMBA_NUM_THREADS", "2")
    space: dict = {}
    exec(PYTHON, space)
    figures = {}
    for name, (_, call) in work.items():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            eval(call, space)
            times.append(time.perf_counter() - t0)
        figures[name] = {"first": times[0], "third": times[2]}
        log(f"  Numba {name}: {times}")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        space["count_primes_prange"](limit, BLOCK, 2)
        times.append(time.perf_counter() - t0)
    figures["threads"] = {"first": times[0], "third": times[2]}
    log(f"  Numba prange 2: {times}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    parser.add_argument("--json", metavar="PATH", help="also write the figures there (for bench/run)")
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    work = workloads(args.quick)
    limit = int(next(iter(work.values()))[0].split("(")[1].rstrip(")"))
    with tempfile.TemporaryDirectory(prefix="ferrocell-bench-") as root:
        env = ferrocell_environment(Path(root))
        log("ferrocell:")
        ours = ferrocell(work, limit, env, log)
    log("Numba:")
    try:
        theirs = numba(work, limit, log)
    except Exception as e:  # noqa: BLE001 - a failing peer is "not measured"
        theirs = f"failed: {e}"
    missing = {"numba": theirs} if isinstance(theirs, str) else {}
    nb = theirs if isinstance(theirs, dict) else {}

    rows = []
    for name in list(work) + ["threads"]:
        label = name if name != "threads" else f"primes below {limit:,}, 2 threads (`%%parallel threads 2` / prange)"
        o, t = ours[name], nb.get(name, {})
        rows.append(json_figure(f"{label}: first call (level 1; Numba compiles)", "s", "lower",
                                o["first"], {"numba": t.get("first")}))
        rows.append(json_figure(f"{label}: third call (tiered up; Numba @njit)", "s", "lower",
                                o["third"], {"numba": t.get("third")}))
        rows.append(json_figure(f"{label}: %opt 3 pinned", "s", "lower",
                                o["opt3"], {"numba": t.get("third")}))
        if "tier_compile" in o:
            rows.append(json_figure(f"{label}: compile time of the tier-up (second call)", "s",
                                    "lower", o["tier_compile"]))
    print("| figure | ferrocell | Numba | Numba ÷ ferrocell |")
    print("|---|---|---|---|")
    for r in rows:
        f, p = r["ferrocell"], r["peers"].get("numba")
        ratio = f"{p / f:.2f}×" if f and p else "—"
        print(f"| {r['figure']} | {fmt_seconds(f)} | {fmt_seconds(p) if p else 'not measured'} | {ratio} |")
    print(f"\n2 CPUs shared; one run. Numba {metadata.version('numba') if nb else '—'}.")
    if args.json:
        write_document(args.json, "native.py", "Native speed: tiered compilation against Numba",
                       rows, missing=missing)


if __name__ == "__main__":
    main()
