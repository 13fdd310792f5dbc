"""A real, private, single-node Slurm cluster for the tests of ferrocell's slurm launcher.

`%cluster start -n N --launcher slurm` starts engines with `srun` inside an
allocation (or submits one with `sbatch`); testing that for real needs real
slurmctld and slurmd daemons. `LocalSlurm` runs both (as root) against a
slurm.conf in a private temporary directory: the one node is this host under its
short hostname, everything talks over 127.0.0.1 on free ports, and state, spool,
logs and pid files stay inside the directory, so the system's /etc/slurm is never
read and nothing is left behind. Authentication is auth/none (Slurm 22.05 still
has it) or, where that plugin is missing, a private munged with its own key and
socket in the directory. The node declares more CPUs than the machine has, so a
few tasks can share two real cores; proctrack/linuxproc and task/none need
neither systemd nor cgroups.

Use (the module is a helper, not a test file): the `slurm` fixture of
conftest.py gives a test a running one (`subprocess.run(["srun", ...],
env=slurm.env)`), or skips it with the reason Slurm cannot run here.

`python tests/python/slurm_local.py` runs a self-check of the whole thing.
"""

from __future__ import annotations

import atexit
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CLIENTS = ("sinfo", "squeue", "srun", "sbatch", "salloc", "scancel", "scontrol")
DAEMONS = ("slurmctld", "slurmd")
PARTITION = "local"
# Where Debian (and most builds) keep the plugins; auth_none.so decides the auth.
PLUGIN_GLOBS = ("/usr/lib/*/slurm-wlm/auth_none.so", "/usr/lib*/slurm/auth_none.so",
                "/usr/local/lib/slurm/auth_none.so")


class SlurmUnavailable(RuntimeError):
    """Slurm cannot run here (binaries missing, not root) or did not come up."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _free_ports(count: int) -> list[int]:
    """Distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _die_with_parent() -> None:
    """preexec_fn: the daemon gets SIGTERM if the test process dies without cleaning up."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _proc_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}


def _open_paths(pid: int) -> list[str]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    paths = []
    for fd in fds:
        try:
            paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return paths


class LocalSlurm:
    """Context manager: a running private Slurm cluster; `env` is for its clients."""

    def __init__(self, cpus: int = 16, auth: str = "auto", startup_timeout: float = 90):
        self.cpus = cpus
        self.auth = auth
        self.startup_timeout = startup_timeout
        self.hostname = socket.gethostname().split(".")[0]
        self.partition = PARTITION
        self.dir: Path | None = None
        self.conf: Path | None = None
        self.env: dict[str, str] = {}
        self.startup_seconds: float | None = None
        self._daemons: dict[str, subprocess.Popen] = {}

    # ---- availability -------------------------------------------------------------

    @staticmethod
    def auth_none_available() -> bool:
        return any(glob.glob(pattern) for pattern in PLUGIN_GLOBS)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why a LocalSlurm cannot start here, or None when it can."""
        missing = [name for name in DAEMONS + CLIENTS if not _which(name)]
        if missing:
            return (f"needs Slurm ({', '.join(missing)} not found): "
                    "apt-get install --no-install-recommends slurmctld slurmd slurm-client")
        if os.geteuid() != 0:
            return "needs root: slurmd must start job steps as any user"
        if not cls.auth_none_available() and not _which("munged"):
            return "Slurm here has no auth/none plugin and munged is missing (apt-get install munge)"
        return None

    # ---- lifecycle ----------------------------------------------------------------

    def __enter__(self) -> "LocalSlurm":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise SlurmUnavailable(reason)
        began = time.monotonic()
        self.dir = Path(tempfile.mkdtemp(prefix="ferrocell-slurm-"))
        self.dir.chmod(0o755)  # munged wants its socket's directories searchable by all
        atexit.register(self.stop)
        try:
            for sub in ("state", "spool", "log"):
                (self.dir / sub).mkdir()
            # Slurm variables of an enclosing job (CI inside Slurm) must not leak in.
            base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
            auth_lines = self._start_munged(base) if self._use_munge() else [
                "AuthType=auth/none", "CredType=cred/none"]
            self.conf = self.dir / "slurm.conf"
            self.conf.write_text(self._config(auth_lines))
            (self.dir / "plugstack.conf").write_text("")
            self.env = {**base, "SLURM_CONF": str(self.conf)}
            for name in DAEMONS:
                self._spawn(name, [_which(name), "-D", "-f", str(self.conf)], self.env)
            self._wait_idle()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _use_munge(self) -> bool:
        if self.auth not in ("auto", "none", "munge"):
            raise ValueError(f"auth must be auto, none or munge, not {self.auth!r}")
        return self.auth == "munge" or (self.auth == "auto" and not self.auth_none_available())

    def _start_munged(self, env: dict[str, str]) -> list[str]:
        """A munged of our own: private key, socket, pid, log and seed files."""
        munge = self.dir / "munge"
        munge.mkdir(mode=0o700)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        sock = munge / "munge.socket"
        self._spawn("munged", [_which("munged"), "--foreground", "--force",
                               f"--socket={sock}", f"--key-file={key}",
                               f"--pid-file={munge / 'munged.pid'}",
                               f"--log-file={self.dir / 'log' / 'munged.log'}",
                               f"--seed-file={munge / 'munged.seed'}"], env)
        deadline = time.monotonic() + 20
        while not sock.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise SlurmUnavailable("munged did not create its socket\n" + self.logs())
            time.sleep(0.1)
        return ["AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={sock}"]

    def _config(self, auth_lines: list[str]) -> str:
        d, host = self.dir, self.hostname
        ctld_port, slurmd_port = _free_ports(2)
        lines = [
            "ClusterName=ferrocell",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}", f"SlurmdPort={slurmd_port}",
            "SlurmUser=root", "SlurmdUser=root", *auth_lines,
            f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}", f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
            f"PlugStackConfig={d / 'plugstack.conf'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            # cons_tres counting CPUs only; the node claims `cpus` CPUs whatever the hardware.
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "SlurmdParameters=config_overrides", "ReturnToService=2",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none", "JobCompType=jobcomp/none",
            "KillWait=2", "MinJobAge=5", "MailProg=/bin/true",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        ]
        return "\n".join(lines) + "\n"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        out = open(self.dir / "log" / f"{name}.out", "wb")
        with out:
            self._daemons[name] = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent)

    def _check_alive(self) -> None:
        for name, proc in self._daemons.items():
            if proc.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with {proc.returncode}\n" + self.logs())

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        state = ""
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.run("sinfo", "-h", "-N", "-n", self.hostname, "-o", "%T",
                             check=False, timeout=15).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.25)
        raise SlurmUnavailable(f"node {self.hostname} not idle (state {state!r})\n" + self.logs())

    def stop(self) -> None:
        """Cancel every job, stop the daemons, kill what survived, remove the directory."""
        if self.dir is None:
            return
        atexit.unregister(self.stop)
        ctld = self._daemons.get("slurmctld")
        if ctld is not None and ctld.poll() is None and self.conf and self.conf.exists():
            jobs = list(self.jobs())
            if jobs:
                self.run("scancel", "--quiet", *jobs, check=False, timeout=20)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.jobs():
                time.sleep(0.25)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._daemons.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._daemons.clear()
        for pid in self.stray_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def stray_pids(self) -> list[int]:
        """Processes of this cluster outside the daemons: slurmstepd (it keeps the
        slurmd log open) and job tasks (they carry our SLURM_CONF and a SLURM_JOB_ID)."""
        if self.dir is None:
            return []
        ours = str(self.dir) + os.sep
        found = []
        for pid in _proc_pids():
            env = _environ(pid)
            task = env.get("SLURM_CONF") == str(self.conf) and "SLURM_JOB_ID" in env
            if task or any(p.startswith(ours) for p in _open_paths(pid)):
                found.append(pid)
        return found

    # ---- clients ------------------------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 120,
            **kw) -> subprocess.CompletedProcess:
        """Run a Slurm client (`srun`, `sbatch`, ...) against this cluster."""
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                              check=check, timeout=timeout, **kw)

    def jobs(self) -> dict[str, str]:
        """Job id -> state (RUNNING, PENDING, COMPLETING...) of every job squeue knows."""
        out = self.run("squeue", "-h", "-o", "%i %T", check=False, timeout=15).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def logs(self, lines: int = 30) -> str:
        """The last lines of every daemon log, for error messages."""
        if self.dir is None:
            return ""
        parts = []
        for path in sorted((self.dir / "log").glob("*")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


# ---- self-check: python tests/python/slurm_local.py ---------------------------------

def _self_check(auth: str) -> None:
    import random
    import re

    def wait_for(what, predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    reason = LocalSlurm.unavailable_reason()
    if reason:
        raise SystemExit(f"skip: {reason}")
    with LocalSlurm(auth=auth) as slurm:
        print(f"[{auth}] up in {slurm.startup_seconds:.1f}s: {slurm.conf}")
        daemons = [p.pid for p in slurm._daemons.values()]
        directory = slurm.dir

        # srun outside any allocation makes one of its own.
        out = slurm.run("srun", "-n", "4", "hostname").stdout.split()
        assert out == [slurm.hostname] * 4, out

        # salloc --no-shell, then steps inside the allocation.
        err = slurm.run("salloc", "-N1", "-n4", "--no-shell").stderr
        job = re.search(r"Granted job allocation (\d+)", err).group(1)
        env_out = slurm.run("srun", f"--jobid={job}", "-n", "4", "--overlap", "env").stdout
        ranks = sorted(re.findall(r"^SLURM_PROCID=(\d+)$", env_out, re.M))
        assert ranks == ["0", "1", "2", "3"], ranks
        names = sorted({m for m in re.findall(r"^(SLURM\w*)=", env_out, re.M)})
        print("srun task variables:", " ".join(names))
        slurm.run("scancel", job)
        wait_for("the allocation to end", lambda: job not in slurm.jobs())

        # salloc running srun as its command.
        out = slurm.run("salloc", "-n", "4", "srun", "-n", "4", "hostname").stdout.split()
        assert out == [slurm.hostname] * 4, out

        # sbatch: running in squeue; scancel kills its process.
        marker = f"{random.randint(1000, 9999)}.{random.randint(100, 999)}"
        job = slurm.run("sbatch", "--parsable", "--output=/dev/null",
                        "--wrap", f"sleep {marker}").stdout.strip().split(";")[0]
        wait_for("RUNNING", lambda: slurm.jobs().get(job) == "RUNNING")

        def sleepers():
            return [pid for pid in _proc_pids()
                    if _environ(pid).get("SLURM_JOB_ID") == job
                    and Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2]
                    == [b"sleep", marker.encode()]]
        wait_for("the job's sleep", sleepers)
        slurm.run("scancel", job)
        wait_for("the job to leave squeue", lambda: job not in slurm.jobs())
        wait_for("its sleep to die", lambda: not sleepers(), timeout=15)

        # A batch script running N tasks with srun.
        script = slurm.dir / "job.sh"
        output = slurm.dir / "job.out"
        script.write_text("#!/bin/sh\n#SBATCH --ntasks=3\n"
                          'srun sh -c \'echo "rank $SLURM_PROCID of $SLURM_NTASKS"\'\n')
        slurm.run("sbatch", "--wait", f"--output={output}", str(script))
        assert sorted(output.read_text().split("\n")[:-1]) == [
            f"rank {i} of 3" for i in range(3)], output.read_text()
        began = time.monotonic()
    print(f"[{auth}] stopped in {time.monotonic() - began:.1f}s")
    alive = [pid for pid in daemons if Path(f"/proc/{pid}").exists()]
    assert not alive and not directory.exists(), (alive, directory)
    print(f"[{auth}] ok")


if __name__ == "__main__":
    import sys
    for mode in sys.argv[1:] or ["auto"]:
        _self_check(mode)
