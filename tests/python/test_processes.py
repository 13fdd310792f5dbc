"""`%%parallel processes`: the cell body on a warm pool of worker processes."""

from __future__ import annotations

import os
import re
import signal
import textwrap
import time

import kernel_helpers as kh
from kernel_helpers import error_text, of_type, ok, run, slow_each, stream_text, tables, value


def worker_pids(kc, n=2):
    """The pids of the pool's first n workers, by rank (starting them if needed)."""
    reply, outputs = run(kc, f"%%parallel processes {n} --out __pids\nstd::process::id()", timeout=60)
    ok(reply, outputs)
    pids = [int(p) for p in re.findall(r"\d+", value(kc, "__pids"))]
    assert len(pids) == n
    return pids


def test_ranks_run_on_worker_processes_that_stay_warm(kernel):
    km, kc = kernel
    runner = int(value(kc, "std::process::id()"))
    reply, outputs = run(kc, textwrap.dedent("""\
        %%parallel processes 2
        println!("rank {rank} of {size}");
        (rank, size, std::process::id())
        """), timeout=60)
    ok(reply, outputs)
    assert sorted(stream_text(outputs).splitlines()) == ["[0] rank 0 of 2", "[1] rank 1 of 2"]
    [table] = tables(outputs)
    assert "2 ranks on 2 processes" in table["text/plain"]
    pids = [int(p) for p in re.findall(r"\((\d), 2, (\d+)\)", table["text/plain"]) for p in [p[1]]]
    assert len(set(pids)) == 2 and runner not in pids, table["text/plain"]
    # Workers are the runner's children: they go when the runner goes.
    assert set(pids) <= set(kh.descendants(runner))
    # Warm: the next cell runs on the same processes.
    assert worker_pids(kc) == pids


def test_variables_are_sent_once_and_again_when_changed(kc):
    # A type whose deserialisation says where it happens.
    ok(*run(kc, textwrap.dedent("""\
        #[derive(Debug)]
        struct Loud(u64);
        impl serde::Serialize for Loud {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_u64(self.0) }
        }
        impl<'de> serde::Deserialize<'de> for Loud {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = <u64 as serde::Deserialize>::deserialize(d)?;
                eprintln!("loaded Loud({v})");
                Ok(Loud(v))
            }
        }
        let mut loud = Loud(3);
        let shared = std::rc::Rc::new(vec![1u8, 2, 3]);
        """)))
    cell = "%%parallel processes 2\nloud.0 * 10 + shared.len() as u64"
    reply, outputs = run(kc, cell, timeout=60)
    ok(reply, outputs)
    assert sorted(stream_text(outputs, "stderr").splitlines()) == ["[0] loaded Loud(3)", "[1] loaded Loud(3)"]
    assert "33" in tables(outputs)[0]["text/plain"]
    reply, outputs = run(kc, cell)
    ok(reply, outputs)
    assert stream_text(outputs, "stderr") == ""  # unchanged: not sent again
    ok(*run(kc, "loud = Loud(4);"))
    reply, outputs = run(kc, cell)
    ok(reply, outputs)
    assert sorted(stream_text(outputs, "stderr").splitlines()) == ["[0] loaded Loud(4)", "[1] loaded Loud(4)"]
    assert "43" in tables(outputs)[0]["text/plain"]


def test_a_variable_redefined_with_the_same_bytes_and_another_type_is_sent_again(kc):
    ok(*run(kc, "let x: u32 = 5;"))
    reply, outputs = run(kc, "%%parallel processes 2 --out a\nx as u64 + rank as u64", timeout=60)
    ok(reply, outputs)
    ok(*run(kc, "let x: i32 = 5;"))  # bincode: the same four bytes
    reply, outputs = run(kc, "%%parallel processes 2 --out b\nx.signum() as i64 + rank as i64", timeout=60)
    ok(reply, outputs)
    assert value(kc, "(a, b)") == "([5, 6], [1, 2])"


def test_what_cannot_travel_is_named(kc):
    ok(*run(kc, "let started = std::time::Instant::now();\nlet fine = 2u8;"))
    reply, outputs = run(kc, "%%parallel processes 2\nstarted.elapsed().as_secs() + fine as u64")
    assert reply["content"]["ename"] == "ParallelError"
    assert "`started` (`std::time::Instant`)" in reply["content"]["evalue"], reply["content"]["evalue"]
    assert "no serde support" in reply["content"]["evalue"]
    # A value that cannot come back, and items that are references.
    reply, outputs = run(kc, "%%parallel processes 2\nstd::time::Instant::now()")
    assert reply["content"]["ename"] == "CompileError"
    text = error_text(of_type(outputs, "error")[0])
    assert "Serialize" in text and "sends each item to the workers" in text, text
    assert "__fc_bincode" not in text  # the generated call is not shown
    ok(*run(kc, "let v = vec![1u64, 2];"))
    reply, outputs = run(kc, "%%parallel processes 2 --each v.iter()\n*item")
    assert reply["content"]["ename"] == "CompileError"
    assert "owned values" in error_text(of_type(outputs, "error")[0])
    assert value(kc, "fine + v.len() as u8") == "4"


def test_a_crashed_worker_is_reported_and_replaced(kc):
    before = worker_pids(kc)
    reply, outputs = run(kc, textwrap.dedent("""\
        %%parallel processes 2
        if rank == 1 { std::process::abort(); }
        rank + 40
        """), timeout=60)
    assert reply["content"]["ename"] == "ParallelError"
    text = error_text(reply["content"])
    assert f"rank 1: worker process {before[1]} killed by signal SIGABRT" in text, text
    assert re.search(r"^\s+0\s+40\s", tables(outputs)[0]["text/plain"], re.M)
    after = worker_pids(kc)
    assert after[0] == before[0] and after[1] != before[1]


def test_a_worker_killed_mid_run_loses_no_item(kc):
    pids = worker_pids(kc)
    msg_id = kc.execute(slow_each("processes 2", 60, out="tripled", value="item * 3"))
    kh.wait_for_output(kc, msg_id)
    time.sleep(0.3)
    os.kill(pids[1], signal.SIGKILL)
    reply, outputs = kh.wait(kc, msg_id, timeout=60)
    ok(reply, outputs)
    err = stream_text(outputs, "stderr")
    assert f"worker 1: worker process {pids[1]} killed by signal SIGKILL" in err, err
    assert "unfinished items run on the other workers" in err
    assert "60 items on 2 processes" in tables(outputs)[-1]["text/plain"]
    assert value(kc, "tripled.iter().enumerate().all(|(i, v)| *v == 3 * i as u64)") == "true"
    assert value(kc, "tripled.len()") == "60"


def test_interrupt_stops_a_processes_run_and_the_pool_goes_on(kernel):
    km, kc = kernel
    ok(*run(kc, "let kept = String::from(\"still here\");"))
    worker_pids(kc)
    msg_id = kc.execute("%%parallel processes 2\nprintln!(\"spinning\");\nloop { std::hint::spin_loop(); }")
    kh.wait_for_output(kc, msg_id)
    start = time.monotonic()
    km.interrupt_kernel()
    reply = kh.shell_reply(kc, msg_id, start + 30)
    assert time.monotonic() - start < 2.0
    assert reply["content"]["status"] == "error"
    assert "interrupted" in error_text(reply["content"])
    assert value(kc, "kept.clone()") == '"still here"'
    ok(*run(kc, "%%parallel processes 2\nrank"))


def test_scaling_on_processes(kc):
    reply, outputs = run(kc, "%%parallel processes --scaling 2 --out last\n(0..300_000u64).map(|i| i % 7).sum::<u64>()",
                         timeout=60)
    ok(reply, outputs)
    charts = [m["content"]["data"] for m in outputs
              if m["msg_type"] == "display_data" and "image/svg+xml" in m["content"]["data"]]
    assert len(charts) == 1 and charts[0]["image/svg+xml"].count("<circle") == 2
    assert value(kc, "last.len()") == "2"


def gone_within(pids, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(kh.alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if kh.alive(p)] == []


def test_no_worker_outlives_its_runner_or_kernel(start_kernel):
    km, kc = start_kernel()
    ok(*run(kc, "let kept = 5u8;"))
    pids = worker_pids(kc)
    # A runner replaced after an interrupt it could not obey takes its pool along.
    msg_id = kc.execute("println!(\"spinning\");\nloop { std::hint::spin_loop(); }")
    kh.wait_for_output(kc, msg_id)
    km.interrupt_kernel()
    reply = kh.shell_reply(kc, msg_id, time.monotonic() + 30)
    assert reply["content"]["status"] == "error"
    assert gone_within(pids)
    # The next parallel cell starts a new pool, with the variable restored.
    reply, outputs = run(kc, "%%parallel processes 2 --out got\nkept + rank as u8", timeout=60)
    ok(reply, outputs)
    assert value(kc, "got") == "[5, 6]"
    pids = worker_pids(kc)
    kh.stop_kernel(km, kc)
    assert gone_within(pids)
