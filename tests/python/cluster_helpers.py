"""What the cluster tests share: `%cluster status` read back, starting a local
cluster, and waiting for processes to be gone."""

from __future__ import annotations

import re
import time
from pathlib import Path

import kernel_helpers as kh
from kernel_helpers import ok, run, stream_text


def status(kc):
    """`%cluster status`: the controller's pid, the connection file, and each
    engine's (id, pid, worker pid)."""
    reply, outputs = run(kc, "%cluster status")
    ok(reply, outputs)
    text = stream_text(outputs)
    m = re.search(r"controller pid (\d+) on \S+, listening on 127\.0\.0\.1 \(connection file (\S+)\)", text)
    assert m, text
    engines = [tuple(int(x) for x in row) for row in
               re.findall(r"^\s+(\d+)\s+\S+\s+(\d+)\s+(\d+)\s+ready", text, re.M)]
    return int(m.group(1)), Path(m.group(2)), engines


def gone_within(pids, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(kh.alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if kh.alive(p)] == []


def start_cluster(kc, n=2):
    reply, outputs = run(kc, f"%cluster start -n {n}", timeout=180)
    ok(reply, outputs)
    assert f"Cluster ready: {n} engines" in kh.all_text(outputs), kh.all_text(outputs)
    return status(kc)
