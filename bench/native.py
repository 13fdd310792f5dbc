#!/usr/bin/env python3
"""Native-speed benchmark: the lecture's compute workloads in ferrocell, next to Numba,
Cython and PyOpenCL.

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

Then the same workloads in C (`%%c -O3 -lm`, called from Rust; the second call is
shown), and the Mandelbrot set as an OpenCL kernel (`%%opencl`, on device 0, host
memory copied there and back; the third call).

Numba: `@njit` (the first call compiles; the third is shown), and `@njit(parallel=True)`
with `prange` on 2 threads for the primes (blocks dealt the same way). Cython: the
workloads as a typed .pyx, built by pyximport (the third call). PyOpenCL: the same
kernel on the same device, a buffer made from host memory and copied back (the third
call). The workloads' sources are in bench/native_sources.py.

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
from native_sources import C, CYTHON, NUMBA, OPENCL, RUST
from results import figure as json_figure, write as write_document

BLOCK = 1000

def workloads(quick: bool) -> dict[str, tuple[str, str, str]]:
    """Name → (Rust call, C call, Python call), the same work."""
    limit, samples, (w, h), steps = ((1_000_000, 10_000_000, (300, 200), 200_000) if quick
                                     else (3_000_000, 40_000_000, (1200, 800), 2_000_000))
    return {
        f"primes below {limit:,}": (f"count_primes({limit})", f"count_primes_c({limit})",
                                    f"count_primes({limit})"),
        f"π from {samples:,} samples": (f"monte_carlo_pi({samples})", f"monte_carlo_pi_c({samples})",
                                        f"monte_carlo_pi({samples})"),
        f"Mandelbrot {w}×{h}": (f"mandelbrot({w}, {h})", f"mandelbrot_c({w}, {h})",
                               f"mandelbrot({w}, {h})"),
        f"n-body, {steps:,} steps": (f"nbody({steps})", f"nbody_c({steps})", f"nbody({steps})"),
    }


def grid(work: dict) -> tuple[int, int]:
    """The Mandelbrot workload's width and height."""
    call = next(c for name, (c, _, _) in work.items() if name.startswith("Mandelbrot"))
    w, h = call.split("(")[1].rstrip(")").split(", ")
    return int(w), int(h)


def ferrocell(work: dict, limit: int, env: dict, log) -> dict:
    figures = {}
    km, kc, _ = start("ferrocell", env)
    try:
        run_cell(kc, ":dep")
        run_cell(kc, RUST)
        for name, (call, _, _) in work.items():
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
        for name, (call, _, _) in work.items():
            text = run_cell(kc, f"%time {call} // pinned")
            figures[name]["opt3"] = seconds_in(text, "Wall time: ")
        text = run_cell(kc, f"%%parallel threads 2\n// pinned\n{body}")
        figures["threads"]["opt3"] = seconds_in(text, r"2 ranks on 2 threads in ")
        run_cell(kc, "%opt auto")
        # The same in C (%%c -O3), called from Rust.
        run_cell(kc, C)
        for name, (_, call, _) in work.items():
            texts = [run_cell(kc, f"%time unsafe {{ {call} }} // c {k}") for k in (1, 2)]
            figures[name]["c"] = seconds_in(texts[1], "Wall time: ")
        log(f"  ferrocell %%c: {[figures[n]['c'] for n in work]}")
        # The Mandelbrot set as an OpenCL kernel on device 0, host memory there and back.
        w, h = grid(work)
        run_cell(kc, "%%opencl\n" + OPENCL)
        runs = [seconds_in(run_cell(kc, f"%time mandel.run(({w}, {h}), &mut vec![0u32; {w * h}], {w}, {h}).unwrap() // {k}"),
                           "Wall time: ") for k in (1, 2, 3)]
        figures["opencl"] = runs[2]
        log(f"  ferrocell %%opencl: {runs}")
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
    exec(NUMBA, space)
    figures = {}
    for name, (_, _, call) in work.items():
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


def third_of_three(f) -> float:
    """The third of three timed calls (the first may compile)."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return times[2]


def cython(work: dict, root: Path, log) -> dict | str:
    try:
        import pyximport
    except ImportError:
        return "Cython is not installed (pip install -r bench/requirements.txt)"
    (root / "native_bench.pyx").write_text(CYTHON)
    sys.path.insert(0, str(root))
    pyximport.install(build_dir=str(root / "build"), language_level=3)
    import native_bench  # noqa: E402  (built by pyximport from the .pyx above)

    figures = {}
    for name, (_, _, call) in work.items():
        figures[name] = third_of_three(lambda: eval(call, vars(native_bench)))
        log(f"  Cython {name}: {figures[name]:.4f} s")
    return figures


def pyopencl(work: dict, log) -> float | str:
    try:
        import numpy as np
        import pyopencl as cl
    except ImportError:
        return "PyOpenCL is not installed (pip install -r bench/requirements.txt)"
    device = [d for p in cl.get_platforms() for d in p.get_devices()][0]
    ctx = cl.Context([device])
    queue = cl.CommandQueue(ctx)
    program = cl.Program(ctx, OPENCL).build()
    w, h = grid(work)
    mf = cl.mem_flags

    def run():
        out = np.zeros(w * h, dtype=np.uint32)
        buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=out)
        # A kernel object per call, as ferrocell's handle makes one per run.
        cl.Kernel(program, "mandel")(queue, (w, h), None, buf, np.uint32(w), np.uint32(h))
        cl.enqueue_copy(queue, out, buf)
        queue.finish()
        return out

    seconds = third_of_three(run)
    log(f"  PyOpenCL on {device.name}: {seconds:.4f} s")
    return seconds


def measured(f, *args):
    """A peer's figures, or why there are none."""
    try:
        return f(*args)
    except Exception as e:  # noqa: BLE001 - a failing peer is "not measured"
        return f"failed: {e}"


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
        nb = measured(numba, work, limit, log)
        log("Cython:")
        cy = measured(cython, work, Path(root), log)
    log("PyOpenCL:")
    ocl = measured(pyopencl, work, log)
    missing = {name: why for name, why in (("numba", nb), ("cython", cy), ("pyopencl", ocl))
               if isinstance(why, str)}
    nb = nb if isinstance(nb, dict) else {}
    cy = cy if isinstance(cy, dict) else {}
    ocl = ocl if isinstance(ocl, float) else None

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
        if "c" in o:
            rows.append(json_figure(f"{label}: C (`%%c -O3`; Cython)", "s", "lower",
                                    o["c"], {"cython": cy.get(name)}))
        if "tier_compile" in o:
            rows.append(json_figure(f"{label}: compile time of the tier-up (second call)", "s",
                                    "lower", o["tier_compile"]))
    w, h = grid(work)
    rows.append(json_figure(f"Mandelbrot {w}×{h} as an OpenCL kernel on device 0 (`%%opencl`; PyOpenCL)",
                            "s", "lower", ours["opencl"], {"pyopencl": ocl}))
    print("| figure | ferrocell | peer | peer ÷ ferrocell |")
    print("|---|---|---|---|")
    for r in rows:
        f = r["ferrocell"]
        for peer, p in (r["peers"] or {None: None}).items():
            shown = f"{peer} {fmt_seconds(p)}" if p else (f"{peer}: not measured" if peer else "—")
            ratio = f"{p / f:.2f}×" if f and p else "—"
            print(f"| {r['figure']} | {fmt_seconds(f)} | {shown} | {ratio} |")
    versions = ", ".join(f"{m} {metadata.version(m)}" for m in ("numba", "Cython", "pyopencl")
                         if m.lower() not in missing)
    print(f"\n2 CPUs shared; one run. {versions}.")
    if args.json:
        about = {m.lower(): f"{m} {metadata.version(m)}" for m in ("numba", "Cython", "pyopencl")
                 if m.lower() not in missing}
        write_document(args.json, "native.py",
                       "Native speed: tiered compilation, C and OpenCL against Numba, Cython and PyOpenCL",
                       rows, missing=missing, about=about)


if __name__ == "__main__":
    main()
