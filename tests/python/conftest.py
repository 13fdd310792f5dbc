"""Fixtures for the Python tests: every test talks to the real release binary
over real ZeroMQ, through jupyter_client, with a private cache, history
directory and kernelspec for the whole run."""

from __future__ import annotations

from collections import namedtuple
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
