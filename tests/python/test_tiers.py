"""Tiered compilation: cells build at the fast level first; code that ran long
(over 100 ms) is built at level 3 from then on, in the cells that call it and
when the same cell runs again. `%time` says so ("tiered up"), `%opt` lists what
is hot, `%opt N` pins a level. Statics and thread-locals stay single."""

from __future__ import annotations

import time

from kernel_helpers import descendants, kernel_pid, ok, result_text, run, stream_text

PRIMES = """
fn is_prime(n: u64) -> bool {
    if n < 2 { return false; }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 { return false; }
        d += 1;
    }
    true
}
fn count_primes(limit: u64) -> usize { (2..limit).filter(|&n| is_prime(n)).count() }
"""

# Long enough at level 1 on a slow machine (well over 100 ms), short at level 3.
PRIMES_BELOW_3M = ("count_primes(3_000_000)", "216816")

TIERED = "tiered up: opt-level 3"


def timed(kc, code: str) -> tuple[str, str | None]:
    """Runs `%time code`: its stdout and its value."""
    reply, outputs = run(kc, f"%time {code}")
    ok(reply, outputs)
    return stream_text(outputs), result_text(outputs)


def test_a_function_that_ran_long_is_built_at_level_3_in_later_cells(kc):
    ok(*run(kc, PRIMES))
    code, primes = PRIMES_BELOW_3M
    out, value = timed(kc, code)
    assert value == primes and TIERED not in out, out
    _, outputs = run(kc, "%opt")
    text = stream_text(outputs)
    assert "tiered" in text and "count_primes" in text and "is_prime" in text, text
    # A new cell that calls it: built at level 3, same answer.
    out, value = timed(kc, f"{code} + 0")
    assert value == primes and TIERED in out, out
    # A function defined later that calls the hot one is hot too.
    ok(*run(kc, "fn primes_twice(limit: u64) -> usize { count_primes(limit) * 2 }"))
    out, value = timed(kc, "primes_twice(10)")
    assert value == "8" and TIERED in out, out
    # Code that names nothing hot stays at the fast level.
    out, value = timed(kc, "(1..=10u64).sum::<u64>()")
    assert value == "55" and TIERED not in out, out


def test_statics_thread_locals_and_methods_stay_single_across_tiers(kc):
    ok(*run(kc, """
use std::sync::atomic::{AtomicU64, Ordering};
static CALLS: AtomicU64 = AtomicU64::new(0);
thread_local! { static MINE: std::cell::Cell<u64> = std::cell::Cell::new(0); }
struct Mixer { state: u64 }
impl Mixer {
    fn mix(&mut self, n: u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        MINE.with(|m| m.set(m.get() + 1));
        for i in 0..n { self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(i ^ (self.state >> 29)); }
        self.state
    }
}
fn calls() -> (u64, u64) { (CALLS.load(Ordering::SeqCst), MINE.with(|m| m.get())) }
// The copy of the method in this cell's own library, for a later cell to call.
static MIX_HERE: fn(&mut Mixer, u64) -> u64 = Mixer::mix;
let mut m = Mixer { state: 1 };
m.mix(1);
"""))
    # Long at level 1: the method and the variable become hot.
    ok(*run(kc, "m.mix(400_000_000);"))
    # A cell built at level 3 calls its own copy of the method and the defining
    # library's: both count in the one static and, on the cell's thread, in the
    # one thread-local.
    out, value = timed(kc, "{ m.mix(1); MIX_HERE(&mut m, 1); calls() }")
    assert TIERED in out, out
    assert value == "(4, 2)", value
    assert result_text(run(kc, "calls().0")[1]) == "4"


def test_opt_pins_a_level_and_auto_tiers_again(kc):
    ok(*run(kc, PRIMES))
    ok(*run(kc, "%opt 1"))
    code, primes = PRIMES_BELOW_3M
    for _ in range(2):
        out, value = timed(kc, code)
        assert value == primes and TIERED not in out, out
    _, outputs = run(kc, "%opt")
    assert "pinned" in stream_text(outputs)
    ok(*run(kc, "%opt auto"))
    _, outputs = run(kc, "%opt")
    assert "tiered" in stream_text(outputs)
    timed(kc, code)
    out, value = timed(kc, f"{code} + 0")
    assert value == primes and TIERED in out, out


def test_a_hot_cell_is_built_at_level_3_while_the_kernel_is_idle(kernel):
    km, kc = kernel
    ok(*run(kc, PRIMES))
    code, primes = PRIMES_BELOW_3M
    out, value = timed(kc, code)
    assert value == primes and TIERED not in out, out
    # The kernel builds the cell again while idle: a rustc below it comes and goes.
    pid = kernel_pid(km)

    def rustc_running() -> bool:
        for child in descendants(pid):
            try:
                with open(f"/proc/{child}/comm") as f:
                    if f.read().strip() == "rustc":
                        return True
            except OSError:
                pass
        return False

    deadline = time.monotonic() + 10
    while not rustc_running() and time.monotonic() < deadline:
        time.sleep(0.02)
    deadline = time.monotonic() + 120
    while rustc_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    # Then the same cell run again finds that library built.
    out, value = timed(kc, code)
    assert value == primes, out
    assert "Compile time: none (cached) (tiered up: opt-level 3" in out, out
