"""Several kernels on one cluster (`%cluster connect`): an engine serves one run at
a time and the controller queues the others; a kernel that dies frees its engines."""

from __future__ import annotations

import os
import signal
import time

import kernel_helpers as kh
from kernel_helpers import ok, run, value
from cluster_helpers import start_cluster


def gated(gate, body):
    """A cluster cell that says "holding" on each engine, then waits for `gate`."""
    return ("%%parallel cluster --out mine\n"
            'println!("holding");\n'
            f'while !std::path::Path::new("{gate}").exists() '
            "{ std::thread::sleep(std::time::Duration::from_millis(20)); }\n"
            f"{body}\n")


def wait_for_text(kc, msg_id, text, timeout=60):
    """Reads the running request's IOPub until a stream says `text` (what it read
    is not kept: the request's later wait sees the rest, and its reply)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = kh.next_iopub(kc, msg_id, deadline)
        if msg["msg_type"] == "stream" and text in msg["content"]["text"]:
            return


def test_two_kernels_share_a_cluster_one_run_per_engine(start_kernel, tmp_path):
    a, b = start_kernel().kc, start_kernel().kc
    _, path, _ = start_cluster(a)
    reply, outputs = run(b, f"%cluster connect {path}", timeout=60)
    ok(reply, outputs)
    gate = tmp_path / "gate"
    first = a.execute(gated(gate, "rank + 10"))
    wait_for_text(a, first, "holding")
    # b's cell waits for the engines while a's run holds them, and says so.
    second = b.execute("%%parallel cluster --out theirs\nrank + 100")
    wait_for_text(b, second, "waiting for engines held by a run of kernel pid")
    gate.touch()
    reply, outs = kh.wait(a, first, timeout=60)
    ok(reply, outs)
    reply, outs = kh.wait(b, second, timeout=60)
    ok(reply, outs)
    assert value(a, "mine") == "[10, 11]"
    assert value(b, "theirs") == "[100, 101]"
    # Each kernel's --persist namespace is its own.
    ok(*run(a, "%%parallel cluster --persist\nlet tag = format!(\"a{rank}\");", timeout=60))
    ok(*run(b, "%%parallel cluster --persist\nlet tag = 7u32 + rank as u32;", timeout=60))
    ok(*run(a, "%cluster pull tag --out a_tags", timeout=60))
    ok(*run(b, "%cluster pull tag --out b_tags", timeout=60))
    assert value(a, "a_tags") == '["a0", "a1"]'
    assert value(b, "b_tags") == "[7, 8]"


def test_a_kernel_that_dies_frees_its_engines(start_kernel):
    owner = start_kernel()
    _, path, _ = start_cluster(owner.kc)
    doomed = start_kernel()
    ok(*run(doomed.kc, f"%cluster connect {path}", timeout=60))
    forever = doomed.kc.execute("%%parallel cluster\nprintln!(\"holding\");\n"
                                "loop { std::thread::sleep(std::time::Duration::from_millis(10)); }")
    wait_for_text(doomed.kc, forever, "holding")
    waiting = owner.kc.execute("%%parallel cluster --out after\nrank * 3")
    wait_for_text(owner.kc, waiting, "waiting for engines held by a run of kernel pid")
    os.kill(kh.kernel_pid(doomed.km), signal.SIGKILL)
    t0 = time.monotonic()
    reply, outs = kh.wait(owner.kc, waiting, timeout=60)
    ok(reply, outs)
    assert value(owner.kc, "after") == "[0, 3]"
    assert time.monotonic() - t0 < 30
