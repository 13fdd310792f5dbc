"""Fixtures for the Python tests: every test talks to the real release binary
over real ZeroMQ, through jupyter_client, with a private cache, history
directory and kernelspec for the whole run."""

from __future__ import annotations

import os
import subprocess
from collections import namedtuple
from pathlib import Path
from typing import Any, Callable

import pytest

import kernel_helpers as kh
from kernel_helpers import run  # noqa: F401  (the helper tests use: run(kc, code, **kw))

Kernel = namedtuple("Kernel", "km kc")


@pytest.fixture(scope="session", autouse=True)
def ferrocell_environment() -> dict:
    """Session-wide FERROCELL_CACHE / FERROCELL_DATA_DIR / JUPYTER_PATH, with the
    kernelspec installed by `ferrocell install --prefix` and the prelude built."""
    paths = kh.ensure_environment()
    kh.warm_cache()
    return paths


@pytest.fixture
def start_kernel(tmp_path) -> Callable[..., Kernel]:
    """Factory: start_kernel(env={...}) starts one more kernel, stopped at teardown.

    Each kernel gets its own history directory unless env names one."""
    started: list[Kernel] = []

    def start(env: dict[str, Any] | None = None, ready_timeout: float = 60, **launch) -> Kernel:
        env = dict(env or {})
        if "FERROCELL_DATA_DIR" not in env:
            data = tmp_path / f"data-{len(started)}"
            data.mkdir()
            env["FERROCELL_DATA_DIR"] = str(data)
        kernel = Kernel(*kh.start_kernel(env=env, ready_timeout=ready_timeout, **launch))
        started.append(kernel)
        return kernel

    yield start
    for kernel in reversed(started):
        kh.stop_kernel(kernel.km, kernel.kc)


@pytest.fixture
def kernel(start_kernel) -> Kernel:
    """A started KernelManager and its ready blocking client: `km, kc = kernel`."""
    return start_kernel()


@pytest.fixture
def kc(kernel):
    """Just the client of a fresh kernel."""
    return kernel.kc


@pytest.fixture(scope="module")
def slurm():
    """A private single-node Slurm (slurmctld + slurmd; see slurm_local.py), for
    the tests of the slurm launcher; skipped where it cannot run."""
    from slurm_local import LocalSlurm

    reason = LocalSlurm.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with LocalSlurm() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def sge():
    """A private single-node Grid Engine (sge_qmaster + sge_execd from unpacked
    Debian packages; see sge_local.py), for the tests of the sge launcher; skipped
    where it cannot run."""
    from sge_local import LocalSGE

    reason = LocalSGE.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with LocalSGE() as cluster:
        yield cluster


def _sh(*args):
    subprocess.run(args, check=True, capture_output=True, text=True)


@pytest.fixture
def namespace():
    """A network namespace joined to this one by a veth pair: another host, as far
    as TCP is concerned. Yields (host side address, namespace name)."""
    if os.geteuid() != 0 or not Path("/usr/sbin/ip").exists() and not Path("/sbin/ip").exists():
        pytest.skip("network namespaces need root and iproute2")
    n = os.getpid() % 250
    ns, host_if, ns_if = f"fc-test-{os.getpid()}", f"fch{os.getpid() % 100000}", f"fcn{os.getpid() % 100000}"
    host_ip, ns_ip = f"10.213.{n}.1", f"10.213.{n}.2"
    _sh("ip", "netns", "add", ns)
    try:
        _sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _sh("ip", "link", "set", ns_if, "netns", ns)
        _sh("ip", "addr", "add", f"{host_ip}/24", "dev", host_if)
        _sh("ip", "link", "set", host_if, "up")
        _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/24", "dev", ns_if)
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield host_ip, ns
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
