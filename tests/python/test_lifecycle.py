"""The kernel does not outlive the client that started it (like ipykernel)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import kernel_helpers as kh


def test_kernel_and_runner_exit_when_their_client_is_killed(tmp_path):
    kh.ensure_environment()
    pid_file = tmp_path / "pids"
    client = textwrap.dedent(f"""
        import time, sys
        sys.path.insert(0, {str(kh.REPO / 'tests' / 'python')!r})
        import kernel_helpers as kh
        km, kc = kh.start_kernel()
        kh.run(kc, "1 + 1")
        kernel = kh.kernel_pid(km)
        open({str(pid_file)!r}, "w").write(" ".join(map(str, [kernel] + kh.descendants(kernel))))
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", client], env=kh.kernel_env())
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert proc.poll() is None, "the client failed to start a kernel"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) >= 2, pids  # the kernel and its runner
    proc.kill()
    proc.wait()
    left = kh.kill_left(pids, within=10)
    assert not left, f"still running after the client died: {left}"
