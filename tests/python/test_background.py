"""Background runs: `%%parallel processes|cluster --noblock`, `%wait`, `%pending`.

Each run waits on a gate file that the test creates, so that "the cell returned
while its run went on" and "another cell ran meanwhile" are facts of order, not
of timing."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import kernel_helpers as kh
from kernel_helpers import all_text, error_text, ok, run, stream_text, tables, value
from cluster_helpers import start_cluster


def gated(gate: Path, magic: str, body: str) -> str:
    """A cell whose body waits for `gate` to exist before it does `body`."""
    return (f"{magic}\n"
            f'while !std::path::Path::new("{gate}").exists() '
            "{ std::thread::sleep(std::time::Duration::from_millis(20)); }\n"
            f"{body}\n")


def wait_for_text(kc, msg_id: str, text: str, timeout: float = 60) -> None:
    """Reads the running request's IOPub until a stream says `text`."""
    deadline = time.monotonic() + timeout
    while True:
        msg = kh.next_iopub(kc, msg_id, deadline)
        if msg["msg_type"] == "stream" and text in msg["content"]["text"]:
            return


def late_updates(kc, msg_id: str) -> list[str]:
    """The display updates a finished request got after its reply (kept by the
    helpers while other requests were read)."""
    return [m["content"]["data"]["text/plain"]
            for m in kh._stash(kc, "iopub").get(msg_id, [])
            if m["msg_type"] == "update_display_data"]


def start(kc, code: str, timeout: float = 120):
    """Runs a `--noblock` cell; returns its msg_id, reply and outputs."""
    msg_id = kc.execute(code)
    reply, outputs = kh.wait(kc, msg_id, timeout=timeout)
    ok(reply, outputs)
    return msg_id, outputs


def pending(kc) -> str:
    reply, outputs = run(kc, "%pending")
    ok(reply, outputs)
    return stream_text(outputs)


def test_a_processes_run_returns_at_once_and_wait_binds_its_values(kc, tmp_path):
    gate = tmp_path / "gate"
    ok(*run(kc, "let base = 100u64;"))
    msg_id, outputs = start(kc, gated(gate, "%%parallel processes 2 --noblock --out squares",
                                      'println!("rank {rank} done");\nbase + rank as u64'))
    # It returned while its run waits on the gate: a handle, no table.
    [shown] = [m for m in outputs if m["msg_type"] == "display_data"]
    assert "background run `squares` on 2 worker processes: running" in shown["content"]["data"]["text/plain"]
    assert not tables([m for m in outputs if "display_id" not in m["content"].get("transient", {})])
    # The notebook goes on meanwhile, and the session does not know `squares` yet.
    assert value(kc, "let other = base / 50; other * 5") == "10"
    reply, outs = run(kc, "squares.len()")
    assert reply["content"]["status"] == "error"
    listing = pending(kc)
    assert "squares" in listing and "2 worker processes" in listing and "running" in listing, listing

    gate.touch()
    reply, outs = run(kc, "%wait squares", timeout=60)
    ok(reply, outs)
    assert sorted(stream_text(outs).splitlines()) == ["[0] rank 0 done", "[1] rank 1 done"]
    [table] = tables(outs)
    assert "2 ranks on 2 processes" in table["text/plain"]
    assert value(kc, "squares") == "[100, 101]"
    assert value(kc, "other + squares[1]") == "103"
    # The display under the starting cell was brought up to date, to its end.
    updates = late_updates(kc, msg_id)
    assert updates and "done in" in updates[-1] and "2 ranks on 2 processes" in updates[-1], updates
    # Waited for: no longer pending; waiting again says so.
    assert "No background runs" in pending(kc)
    reply, outs = run(kc, "%wait squares")
    assert reply["content"]["status"] == "error"
    assert "no background run named `squares`" in error_text(reply["content"])
    # A bound value is a session variable like any other: it survives a runner crash.
    reply, outs = run(kc, "std::process::abort();")
    assert reply["content"]["status"] == "error"
    assert value(kc, "squares") == "[100, 101]"


def test_a_failed_background_run_reports_by_rank_and_binds_nothing(kc):
    ok(*run(kc, "let keep = vec![1, 2, 3];"))
    start(kc, textwrap.dedent("""\
        %%parallel processes 3 --noblock --out parts
        if rank == 1 { panic!("rank one gives up"); }
        if rank == 2 { std::process::abort(); }
        rank * 10
        """))
    reply, outs = run(kc, "%wait parts", timeout=60)
    assert reply["content"]["ename"] == "ParallelError", reply["content"]
    text = error_text(reply["content"])
    assert "2 of 3 ranks failed" in text
    assert "rank 1: panicked: rank one gives up" in text
    assert "rank 2:" in text and "abort" in text.lower(), text
    reply, _ = run(kc, "parts")
    assert reply["content"]["status"] == "error"
    assert value(kc, "keep") == "[1, 2, 3]"


def test_an_interrupt_while_waiting_stops_the_run_and_the_session_goes_on(kernel):
    kc = kernel.kc
    ok(*run(kc, "let n = 3u32;"))
    start(kc, "%%parallel processes 2 --noblock --out never\n"
              "loop { std::thread::sleep(std::time::Duration::from_millis(10)); }")
    msg_id = kc.execute("%wait never")
    wait_for_text(kc, msg_id, "waiting for background run `never`")
    kernel.km.interrupt_kernel()
    reply, outs = kh.wait(kc, msg_id, timeout=30)
    assert reply["content"]["status"] == "error"
    assert "interrupted" in error_text(reply["content"]), reply["content"]
    assert "No background runs" in pending(kc)
    assert value(kc, "n + 1") == "4"


def test_runs_name_themselves_without_out_and_wait_takes_them_all(kc, tmp_path):
    gate = tmp_path / "gate"
    start(kc, gated(gate, "%%parallel processes 1 --noblock", 'println!("first");'))
    start(kc, gated(gate, "%%parallel processes 1 --noblock --each 0..3", "item * 2"))
    listing = pending(kc)
    assert "bg1" in listing and "bg2" in listing, listing
    gate.touch()
    reply, outs = run(kc, "%wait", timeout=60)
    ok(reply, outs)
    assert "first" in stream_text(outs)
    assert "3 items" in all_text(outs)
    assert "No background runs" in pending(kc)


def test_waiting_twice_for_a_run_and_reset_are_safe(kc, tmp_path):
    gate = tmp_path / "gate"
    start(kc, gated(gate, "%%parallel processes 1 --noblock --out once", "rank + 1"))
    gate.touch()
    reply, outs = run(kc, "%wait once once", timeout=60)
    ok(reply, outs)
    assert value(kc, "once") == "[1]"
    # %reset drops runs, ended or not, with the session they came from.
    start(kc, "%%parallel processes 1 --noblock --out gone\nrank")
    reply, outs = run(kc, "%reset", timeout=60)
    ok(reply, outs)
    assert "background run(s) went with them" in stream_text(outs)
    assert "No background runs" in pending(kc)
    assert value(kc, "1 + 1") == "2"


def test_misuse_is_refused_clearly(kc):
    reply, _ = run(kc, "%%parallel threads 2 --noblock\nrank")
    assert "use processes" in error_text(reply["content"])
    reply, _ = run(kc, "%wait nothing_here")
    assert "no background run named `nothing_here`" in error_text(reply["content"])
    reply, _ = run(kc, "%wait 3x")
    assert reply["content"]["status"] == "error"
    assert "No background runs" in pending(kc)


def test_a_background_run_that_floods_output_keeps_its_newest_megabyte(kernel):
    kc = kernel.kc
    start(kc, "%%parallel processes 1 --noblock\n"
              'for i in 0..200_000 { println!("line {i:06} of a flood of output"); }')
    reply, outs = run(kc, "%wait bg1", timeout=120)
    ok(reply, outs)
    text = stream_text(outs)
    assert "[0] line 199999 of a flood" in text
    assert "[0] line 000000" not in text
    assert len(text) <= (1 << 20) + 4096
    assert "bytes of this background run's output were dropped" in stream_text(outs, "stderr")
    # Kept: its newest megabyte, not the six it printed.
    assert kh.rss_kib(kh.kernel_pid(kernel.km)) < 400 * 1024
    assert value(kc, "1 + 1") == "2"


def test_a_cluster_run_goes_on_while_cells_run_and_holds_its_engines(kc, tmp_path):
    gate = tmp_path / "gate"
    start_cluster(kc)
    ok(*run(kc, "let offset = 7u64;"))
    msg_id, outputs = start(kc, gated(gate, "%%parallel cluster --noblock --out r",
                                      'println!("engine rank {rank}");\nrank as u64 + offset'))
    assert "on 2 engines: running" in all_text(outputs)
    assert value(kc, "offset * 2") == "14"
    # An ordinary cluster cell needs the engines the run holds: it waits for them.
    fg = kc.execute("%%parallel cluster --out again\nrank as u64 * 100")
    wait_for_text(kc, fg, "waiting for engines that background run `r` holds")
    gate.touch()
    reply, outs = kh.wait(kc, fg, timeout=60)
    ok(reply, outs)
    assert value(kc, "again") == "[0, 100]"
    reply, outs = run(kc, "%wait r", timeout=60)
    ok(reply, outs)
    assert sorted(stream_text(outs).splitlines()) == ["[0] engine rank 0", "[1] engine rank 1"]
    assert value(kc, "r") == "[7, 8]"


def test_a_second_cluster_run_queues_behind_the_first(kc, tmp_path):
    gate = tmp_path / "gate"
    start_cluster(kc)
    start(kc, gated(gate, "%%parallel cluster --noblock --out a", "rank"))
    msg_id, _ = start(kc, "%%parallel cluster --noblock --out b\nrank + 10")
    listing = pending(kc)
    assert "queued behind `a`" in listing, listing
    gate.touch()
    reply, outs = run(kc, "%wait b a", timeout=60)
    ok(reply, outs)
    assert value(kc, "(a, b)") == "([0, 1], [10, 11])"


def test_stopping_the_cluster_cancels_its_runs(kc, tmp_path):
    gate = tmp_path / "gate"
    start_cluster(kc)
    start(kc, gated(gate, "%%parallel cluster --noblock --out c", "rank"))
    ok(*run(kc, "%cluster stop", timeout=60))
    reply, _ = run(kc, "%wait c", timeout=30)
    assert reply["content"]["status"] == "error"
    assert "the cluster was stopped" in error_text(reply["content"]), reply["content"]


def test_a_kernel_that_ends_leaves_no_background_process(kernel, tmp_path):
    kc = kernel.kc
    gate = tmp_path / "gate"
    start(kc, gated(gate, "%%parallel processes 2 --noblock --out x", "rank"))
    pid = kh.kernel_pid(kernel.km)
    deadline = time.monotonic() + 30
    procs = []
    while time.monotonic() < deadline:
        procs = kh.descendants(pid)
        if len(procs) >= 4:  # the session's runner need not exist; the run's runner and 2 workers
            break
        time.sleep(0.2)
    assert len(procs) >= 3, procs
    kernel.km.shutdown_kernel(now=False)
    assert not kh.kill_left(procs, within=10)
