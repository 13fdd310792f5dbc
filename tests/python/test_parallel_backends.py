"""What `%%parallel threads` and `%%parallel processes` promise alike: the same
cell on either backend hands out every item in order, reports a failed rank by
its number while keeping the others' values, and keeps output lines whole."""

from __future__ import annotations

import re
import textwrap

import pytest

from kernel_helpers import error_text, ok, run, stream_text, tables, value

# Each backend with the ranks its line test runs (threads are cheap: more of them).
BACKENDS = [("threads", 4), ("processes", 2)]


@pytest.mark.parametrize("backend", [b for b, _ in BACKENDS])
def test_each_hands_out_every_item_in_order_and_binds_them(kc, backend):
    ok(*run(kc, "let offset = 7u64;"))
    reply, outputs = run(kc, f"%%parallel {backend} 2 --each 0..100_000u64 --out shifted\nitem + offset",
                         timeout=60)
    ok(reply, outputs)
    [table] = tables(outputs)
    assert f"100000 items on 2 {backend}" in table["text/plain"]
    assert "…" in table["text/plain"]  # a long table shows its ends only
    assert value(kc, "shifted.len()") == "100000"
    assert value(kc, "shifted.iter().enumerate().all(|(i, v)| *v == i as u64 + 7)") == "true"


@pytest.mark.parametrize("backend", [b for b, _ in BACKENDS])
def test_a_panicking_rank_is_reported_and_the_others_kept(kc, backend):
    ok(*run(kc, "let kept = vec![1, 2, 3];"))
    reply, outputs = run(kc, textwrap.dedent(f"""\
        %%parallel {backend} 3
        if rank == 1 {{ panic!("rank one gives up"); }}
        kept.len() + rank
        """), timeout=60)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ParallelError"
    text = error_text(reply["content"])
    assert "1 of 3 ranks failed" in text and "rank 1: panicked: rank one gives up" in text
    [table] = tables(outputs)
    assert re.search(r"^\s+0\s+3\s", table["text/plain"], re.M), table["text/plain"]
    assert re.search(r"^\s+2\s+5\s", table["text/plain"], re.M), table["text/plain"]
    assert "panicked: rank one gives up" in table["text/plain"]
    assert value(kc, "kept.len()") == "3"
    # The ranks (a worker process, too) survive a panic.
    ok(*run(kc, f"%%parallel {backend} 3\nrank"))


@pytest.mark.parametrize("backend,ranks", BACKENDS)
def test_output_lines_stay_whole_and_group_collects_them(kc, backend, ranks):
    reply, outputs = run(kc, textwrap.dedent(f"""\
        %%parallel {backend} {ranks}
        for i in 0..200 {{ println!("{{}}", format!("{{rank}}").repeat(60)); }}
        """), timeout=60)
    ok(reply, outputs)
    assert tables(outputs) == []  # a unit body shows no table
    lines = stream_text(outputs).splitlines()
    assert len(lines) == 200 * ranks
    for line in lines:
        m = re.fullmatch(r"\[(\d)\] (\d{60})", line)
        assert m and set(m.group(2)) == {m.group(1)}, line
    reply, outputs = run(kc, f"%%parallel {backend} 2 --group\n"
                             'for i in 0..3 { println!("rank {rank} line {i}"); }')
    ok(reply, outputs)
    text = stream_text(outputs)
    for r in range(2):
        block = text.split(f"[rank {r}]\n")[1].splitlines()[:3]
        assert block == [f"rank {r} line {i}" for i in range(3)], text


@pytest.mark.parametrize("backend", [b for b, _ in BACKENDS])
def test_chunks_hand_every_number_to_one_rank(kc, backend):
    """Work stealing: `chunks(range)` gives each rank pieces of the range; together
    the ranks see every number once (taken from one counter on threads, dealt
    round-robin on worker processes)."""
    reply, outputs = run(kc, f"%%parallel {backend} 2 --out parts\n"
                             "chunks(0..100_000).flatten().filter(|n| n % 3 == 0).count()", timeout=60)
    ok(reply, outputs)
    assert value(kc, "parts.iter().sum::<usize>()") == "33334"
    if backend == "processes":
        # Dealt: each worker has its pieces, however fast the other is.
        assert value(kc, "parts.iter().all(|p| *p > 0)") == "true"


def test_a_rank_that_starts_late_takes_fewer_pieces(kc):
    """Stealing on threads: rank 0 sleeps first, and rank 1 takes the pieces that
    a split by rank would have left to rank 0."""
    reply, outputs = run(kc, textwrap.dedent("""\
        %%parallel threads 2 --out taken
        if rank == 0 { std::thread::sleep(std::time::Duration::from_millis(600)); }
        chunks(0..1000).flatten().map(|_| std::thread::sleep(std::time::Duration::from_millis(1))).count()
        """), timeout=60)
    ok(reply, outputs)
    assert value(kc, "taken.iter().sum::<usize>()") == "1000"
    assert value(kc, "taken[0] < taken[1]") == "true", value(kc, "taken")


def test_parallel_for_runs_on_every_core_once_per_number(kc):
    ok(*run(kc, "use std::sync::atomic::{AtomicU64, Ordering};"))
    assert value(kc, textwrap.dedent("""\
        let total = AtomicU64::new(0);
        parallel_for(1..1_000_001, |i| { total.fetch_add(i, Ordering::Relaxed); });
        total.load(Ordering::Relaxed)""")) == "500000500000"
