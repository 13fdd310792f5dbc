"""A cluster as users grow: a thousand engines started at once on this machine,
all registered and all answering a cell, none lost to the load; and a burst of
engines joining over TCP from another network namespace. (The times are
bench/cluster.py's to report; here only what must hold.)"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import kernel_helpers as kh
from kernel_helpers import ok, run, stream_text, value
from cluster_helpers import gone_within

THOUSAND = 1000


def summary(kc):
    reply, outputs = run(kc, "%cluster status", timeout=60)
    ok(reply, outputs)
    return stream_text(outputs)


def test_a_thousand_engines_start_at_once_and_all_run_cells(start_kernel):
    km, kc = start_kernel()
    # The engines' runner is built once per machine, before the burst.
    ok(*run(kc, "%cluster start -n 1", timeout=300))
    ok(*run(kc, "%cluster stop"))
    reply, outputs = run(kc, f"%cluster start -n {THOUSAND}", timeout=300)
    ok(reply, outputs)
    assert f"Cluster ready: {THOUSAND} engines" in kh.all_text(outputs), kh.all_text(outputs)[-2000:]

    # A readable status: a summary, not a thousand rows.
    text = summary(kc)
    assert f"{THOUSAND} engines: {THOUSAND} ready" in text, text
    assert "lost" not in text and len(text.splitlines()) < 12, text

    # Cells on all of them: each rank answers once, and the load loses no engine.
    for _ in range(2):
        reply, outputs = run(kc, "%%parallel cluster --out ranks\n(rank, size)", timeout=300)
        ok(reply, outputs)
        assert value(kc, f"ranks.iter().enumerate().all(|(i, r)| *r == (i, {THOUSAND}))") == "true"
    text = summary(kc)
    assert f"{THOUSAND} engines: {THOUSAND} ready" in text and "lost" not in text, text

    # --all lists every engine.
    reply, outputs = run(kc, "%cluster status --all", timeout=60)
    rows = re.findall(r"^\s+\d+\s+\S+\s+(\d+)\s+(\d+)\s+ready", stream_text(outputs), re.M)
    assert len(rows) == THOUSAND
    pids = [int(p) for row in rows for p in row]
    ok(*run(kc, "%cluster stop", timeout=120))
    assert gone_within(pids, 60), [p for p in pids if kh.alive(p)][:10]


def test_a_burst_of_engines_joins_over_tcp_from_another_network_namespace(kc, namespace, tmp_path):
    host_ip, ns = namespace
    ok(*run(kc, f"%cluster start -n 1 --ip {host_ip}", timeout=180))
    path = Path(re.search(r"connection file (\S+)\)", summary(kc)).group(1))
    copied = tmp_path / "cluster.json"
    copied.write_text(path.read_text())
    os.chmod(copied, 0o600)
    # Another host's cache: the first engine there builds its runner, and the
    # others wait for that build rather than each making their own.
    env = dict(os.environ, FERROCELL_CACHE=str(tmp_path / "other-host-cache"))
    burst = 100
    engines = []
    log = open(tmp_path / "engines.log", "w")
    try:
        for _ in range(burst):
            engines.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, str(kh.BINARY), "engine", "--file", str(copied)],
                env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 200
        while f"{burst + 1} engines: {burst + 1} ready" not in (text := summary(kc)):
            assert all(e.poll() is None for e in engines), (tmp_path / "engines.log").read_text()[-3000:]
            assert time.monotonic() < deadline, text
            time.sleep(1)
        reply, outputs = run(kc, "%%parallel cluster --out ranks\nrank", timeout=180)
        ok(reply, outputs)
        assert value(kc, f"ranks == (0..{burst + 1}).collect::<Vec<usize>>()") == "true"
        assert "lost" not in summary(kc)
        builds = list((tmp_path / "other-host-cache").glob("*/prelude-*/ferrocell-runner"))
        assert len(builds) == 1, builds
    finally:
        ok(*run(kc, "%cluster stop", timeout=60))
        for e in engines:
            try:
                e.wait(timeout=20)
            except subprocess.TimeoutExpired:
                e.kill()
        log.close()
