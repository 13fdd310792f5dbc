"""A real, private, single-node Grid Engine (Son of Grid Engine 8.1.9) for the tests of
ferrocell's SGE launcher.

Debian's gridengine-client conflicts with slurm-wlm-torque (both own /usr/bin/qsub), so
the .debs are only downloaded (FETCH, into DIST) and `prepare()` unpacks them into
DIST/root, where two fix-ups let them run: libjemalloc.so.2 and libspool*.so are linked
into the binaries' RUNPATH ($ORIGIN/../../lib/lx-amd64), and the hard-coded
"/usr/lib/gridengine/%s%s" from which qmaster and spoolinit/spooldefaults dlopen their
spooling library is patched to "%s%s", so that spooling_lib can be an absolute path.

`LocalSGE` makes a cell of its own in a temporary SGE_ROOT (bootstrap, classic spooling,
host_aliases, spool and job tmp dirs, an sge_request sending unnamed job output there
rather than to $HOME), runs sge_qmaster and sge_execd as root in the foreground (SGE_ND)
on free ports, and adds a submit host, a queue `all.q` with `slots` slots and a parallel
environment `smp` ($pe_slots, control_slaves). admin_user none and min_uid 0 let root's
jobs run; login_shells none keeps /etc/profile from resetting the PATH that -V passes.
`env` is for the clients: SGE_ROOT, SGE_CELL, the two ports and PATH with the private
$SGE_ROOT/bin/lx-amd64 (qsub, qstat, qdel...) first. The daemons' environment (SGE_ND=1
included) leaks into every job's, as on any SGE.

`python tests/python/sge_local.py` runs a self-check of the whole thing.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from slurm_local import _die_with_parent, _environ, _free_ports, _open_paths, _proc_pids

DIST = Path(os.environ.get("FERROCELL_SGE_DIST", "/var/cache/ferrocell-sge"))
PACKAGES = "gridengine-common gridengine-client gridengine-exec gridengine-master libjemalloc2"
FETCH = f"mkdir -p {DIST} && cd {DIST} && apt-get download {PACKAGES}"
CLIENTS = ("qsub", "qstat", "qdel", "qconf", "qhost", "qacct", "qalter", "qhold", "qrls",
           "qmod", "qselect", "qrsh", "qlogin", "qsh", "qping", "qquota")
ARCH, CELL, QUEUE, PE = "lx-amd64", "default", "all.q", "smp"
SPOOL_PATCH = (b"/usr/lib/gridengine/%s%s\0", b"%s%s\0".ljust(25, b"\0"))


class SGEUnavailable(RuntimeError):
    """Grid Engine cannot run here (no .debs, not root) or did not come up."""


def prepare(dist: Path = DIST) -> Path:
    """usr/lib/gridengine of the ready unpacked copy, made from dist/*.deb if need be."""
    lib = dist / "root" / "usr" / "lib" / "gridengine"
    if (dist / "root" / ".ready").exists():
        return lib
    debs = sorted(dist.glob("*.deb"))
    if not any(d.name.startswith("gridengine-master_") for d in debs):
        raise SGEUnavailable(f"no gridengine .debs in {dist}: {FETCH}")
    work = Path(tempfile.mkdtemp(prefix="root.", dir=dist))
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work)], check=True)
    runpath = work / "usr" / "lib" / ARCH
    runpath.mkdir(parents=True, exist_ok=True)
    for so in [*(work / "usr" / "lib").glob("*-linux-gnu/libjemalloc.so.2"),
               *(work / "usr" / "lib" / "gridengine").glob("libspool*.so")]:
        (runpath / so.name).symlink_to(os.path.relpath(so, runpath))
    for name in ("sge_qmaster", "spoolinit", "spooldefaults.bin", "spooledit.bin"):
        path = work / "usr" / "lib" / "gridengine" / name
        path.write_bytes(path.read_bytes().replace(*SPOOL_PATCH))
    (work / ".ready").touch()
    try:
        work.rename(dist / "root")
    except OSError:  # prepared by someone else meanwhile
        shutil.rmtree(work, ignore_errors=True)
    return lib


class LocalSGE:
    """Context manager: a running private Grid Engine cell; `env` is for its clients."""

    def __init__(self, slots: int = 8, startup_timeout: float = 60):
        self.slots, self.startup_timeout, self.queue, self.pe = slots, startup_timeout, QUEUE, PE
        self.hostname = self.host = socket.gethostname().split(".")[0]
        self.dir: Path | None = None
        self.env: dict[str, str] = {}
        self.startup_seconds: float | None = None
        self._daemons: dict[str, subprocess.Popen] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why a LocalSGE cannot start here, or None when it can."""
        if os.geteuid() != 0:
            return "needs root: sge_execd must start jobs as any user"
        if not (DIST / "root" / ".ready").exists():
            if not shutil.which("dpkg-deb"):
                return "needs dpkg-deb to unpack the gridengine .debs"
            if not list(DIST.glob("gridengine-master_*.deb")):
                return f"needs the gridengine .debs in {DIST}: {FETCH}"
        try:
            socket.gethostbyname(socket.gethostname())
        except OSError as e:
            return f"this host's name {socket.gethostname()!r} does not resolve: {e}"

    def __enter__(self) -> "LocalSGE":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise SGEUnavailable(reason)
        began = time.monotonic()
        self.lib = lib = prepare()
        share = lib.parent.parent / "share" / "gridengine"
        self.dir = d = Path(tempfile.mkdtemp(prefix="ferrocell-sge-"))
        d.chmod(0o755)
        atexit.register(self.stop)
        try:
            common, qspool = d / CELL / "common", d / CELL / "spool" / "qmaster"
            for sub in (common, qspool, d / CELL / "spool" / "execd", d / "output",
                        d / "tmp", d / "log", d / "bin" / ARCH):
                sub.mkdir(parents=True)
            for name in CLIENTS:
                (d / "bin" / ARCH / name).symlink_to(lib / name)
            qport, eport = _free_ports(2)
            base = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SGE_", "JOB_", "PE_", "NSLOTS", "NHOSTS"))}
            self.env = {**base, "SGE_ROOT": str(d), "SGE_CELL": CELL, "SGE_ARCH": ARCH,
                        "SGE_QMASTER_PORT": str(qport), "SGE_EXECD_PORT": str(eport),
                        "PATH": f"{d / 'bin' / ARCH}:{base.get('PATH', '/usr/bin:/bin')}"}
            (common / "bootstrap").write_text(
                "admin_user none\ndefault_domain none\nignore_fqdn true\n"
                f"spooling_method classic\nspooling_lib {lib}/libspoolc\n"
                f"spooling_params {common};{qspool}\nbinary_path {lib}\n"
                f"qmaster_spool_dir {qspool}\nsecurity_mode none\njob_spooling true\n"
                "listener_threads 2\nworker_threads 2\nscheduler_threads 1\n")
            # Where /etc/hosts maps the hostname to 127.0.0.1, its reverse lookup says
            # "localhost" and qmaster refuses clients ("local host name error") unless
            # host_aliases makes them one host.
            names = dict.fromkeys([self.hostname, "localhost", socket.gethostname()])
            (common / "host_aliases").write_text(" ".join(names) + "\n")
            self.host = self._util("gethostname", "-aname").stdout.strip() or self.hostname
            (common / "act_qmaster").write_text(self.host + "\n")
            (common / "sge_request").write_text(f"-o {d / 'output'} -e {d / 'output'}\n")
            conf = (share / "default-configuration").read_text()
            for key, value in {"execd_spool_dir": d / CELL / "spool" / "execd",
                               "mailer": "/bin/true", "min_uid": 0, "min_gid": 0,
                               "login_shells": "none", "load_report_time": "00:00:05"}.items():
                conf = re.sub(rf"^{key}\s.*$", f"{key} {value}", conf, flags=re.M)
            (d / "configuration").write_text(conf)
            self._util("spoolinit", "classic", f"{lib}/libspoolc", f"{common};{qspool}", "init")
            for what, arg in (("configuration", d / "configuration"),
                              ("complexes", share / "util/resources/centry"),
                              ("usersets", share / "util/resources/usersets"),
                              ("managers", "root")):
                self._util("spooldefaults.bin", what, str(arg))
            self._spawn("sge_qmaster")
            self._wait("qmaster", lambda: self.run("qconf", "-sh", check=False).returncode == 0)
            self._configure()
            self._spawn("sge_execd")
            self._wait("the queue", self._queue_ok)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _util(self, name: str, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.lib / name), *args], env=self.env, cwd=self.dir,
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise SGEUnavailable(f"{name} {' '.join(args)}: {proc.stdout}{proc.stderr}")
        return proc

    def _configure(self) -> None:
        """qconf -a/-m with an EDITOR that sets the attributes in SGE_SET in the template."""
        edit = self.dir / "edit.sh"
        edit.write_text('#!/bin/sh\nprintf "%s\\n" "$SGE_SET" | while read -r k v; do\n'
                        '  sed -i "s|^$k[[:space:]].*|$k $v|" "$1"; done\n')
        edit.chmod(0o755)

        def qconf(*argv: str, **attrs) -> None:
            sets = "\n".join(f"{k} {v}" for k, v in attrs.items())
            self.run("qconf", *argv, env={**self.env, "EDITOR": str(edit), "SGE_SET": sets})
        self.run("qconf", "-as", self.host)
        qconf("-ap", PE, slots=9999, allocation_rule="$pe_slots", control_slaves="TRUE")
        qconf("-aq", QUEUE, hostlist=self.host, pe_list=PE, slots=self.slots,
              load_thresholds="NONE", tmpdir=self.dir / "tmp")
        qconf("-msconf", schedule_interval="0:0:1", flush_submit_sec=1, flush_finish_sec=1)

    def _queue_ok(self) -> bool:
        """The queue instance is there with no state flags (no 'u'nknown, 'a'larm...)."""
        out = self.run("qstat", "-f", "-q", QUEUE, check=False).stdout.splitlines()
        return any(line.split()[0] == f"{QUEUE}@{self.host}" and len(line.split()) == 5
                   for line in out if line.startswith(QUEUE))

    def _spawn(self, name: str) -> None:
        with open(self.dir / "log" / f"{name}.out", "wb") as out:
            self._daemons[name] = subprocess.Popen(
                [str(self.lib / name)], env={**self.env, "SGE_ND": "1"}, cwd=self.dir,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent)

    def _wait(self, what: str, ready, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        while not ready():
            for name, proc in self._daemons.items():
                if proc.poll() is not None:
                    raise SGEUnavailable(f"{name} exited with {proc.returncode}\n" + self.logs())
            if time.monotonic() > deadline:
                raise SGEUnavailable(f"timed out waiting for {what}\n" + self.logs())
            time.sleep(0.2)

    def stop(self) -> None:
        """Delete every job, stop the daemons, kill what survived, remove the directory."""
        if self.dir is None:
            return
        atexit.unregister(self.stop)
        master = self._daemons.get("sge_qmaster")
        if master is not None and master.poll() is None and self._daemons.get("sge_execd"):
            for force in ([], ["-f"]):  # -f forgets a job its execd does not answer for
                if self.jobs():
                    self.run("qdel", *force, "-u", "*", check=False, timeout=20)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and self.jobs():
                    time.sleep(0.2)
        # sge_execd stops in ~2 s on SIGTERM, sge_qmaster in ~9: no state worth waiting for.
        for proc in self._daemons.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self._daemons.items():
            try:
                proc.wait(timeout=5 if name == "sge_execd" else 0.5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._daemons.clear()
        for pid in self.stray_pids():
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def stray_pids(self) -> list[int]:
        """Shepherds and job processes: SGE_JOB_SPOOL_DIR, cwd or an open file in the dir."""
        if self.dir is None:
            return []
        ours, found = str(self.dir) + os.sep, []
        for pid in _proc_pids():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd") + os.sep
            except OSError:
                cwd = ""
            paths = [cwd, _environ(pid).get("SGE_JOB_SPOOL_DIR", ""), *_open_paths(pid)]
            if any(p.startswith(ours) for p in paths):
                found.append(pid)
        return found

    def run(self, *argv: str, check: bool = True, timeout: float = 120,
            **kw) -> subprocess.CompletedProcess:
        """Run a Grid Engine client (`qsub`, `qstat`, ...) against this cell."""
        return subprocess.run(list(argv), **{"env": self.env, **kw}, capture_output=True,
                              text=True, check=check, timeout=timeout)

    def jobs(self) -> dict[str, str]:
        """Job id ("id.task" for array tasks) -> qstat state (qw, hqw, t, r, dr...)."""
        out = self.run("qstat", "-u", "*", "-g", "d", "-xml", check=False, timeout=15).stdout
        return {j.findtext("JB_job_number") + (f".{j.findtext('tasks')}"
                                               if j.findtext("tasks") else ""): j.findtext("state")
                for j in ET.fromstring(out or "<x/>").iter("job_list")}

    def logs(self, lines: int = 30) -> str:
        """The last lines of the daemons' messages files and outputs, for error messages."""
        if self.dir is None:
            return ""
        return "\n".join(
            f"--- {p.relative_to(self.dir)}\n"
            + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
            for p in sorted([*(self.dir / CELL / "spool").rglob("messages"),
                             *(self.dir / "log").glob("*")]))


# ---- self-check: python tests/python/sge_local.py -----------------------------------

def _self_check() -> None:
    import json

    reason = LocalSGE.unavailable_reason()
    if reason:
        raise SystemExit(f"skip: {reason}")
    with LocalSGE() as sge:
        print(f"up in {sge.startup_seconds:.1f}s: SGE_ROOT={sge.dir} host {sge.host}")
        daemons, d, wait_for = [p.pid for p in sge._daemons.values()], sge.dir, sge._wait

        # An array job script of #$ directives; -V passes a JSON string and PATH exactly.
        value = json.dumps({"a": "b c, d", "n": [1, 2], "q": "it's \"x\"", "u": "é"})
        (d / "array.sh").write_text(
            f"#!/bin/sh\n#$ -N ferro_array\n#$ -o {d}/array.$TASK_ID.out\n#$ -j y\n#$ -V\n"
            "#$ -t 1-3\n" 'printf "%s|%s\\n" "$SGE_TASK_ID" "$FERRO_JSON"\necho oops >&2\n'
            "command -v qsub\n")
        out = sge.run("qsub", "-sync", "y", str(d / "array.sh"),
                      env={**sge.env, "FERRO_JSON": value}).stdout
        assert "ferro_array" in out, out
        for task in (1, 2, 3):
            lines = (d / f"array.{task}.out").read_text().splitlines()
            assert lines == [f"{task}|{value}", "oops", f"{d}/bin/{ARCH}/qsub"], lines

        # A parallel-environment job: NSLOTS, PE_HOSTFILE, mpirun on this node.
        (d / "pe.sh").write_text(
            f"#!/bin/sh\n#$ -N ferro_pe\n#$ -o {d}/pe.out\n#$ -j y\n#$ -pe {PE} 2\n"
            'echo "slots $NSLOTS pe $PE"\ncat "$PE_HOSTFILE"\n'
            "mpirun --allow-run-as-root -n $NSLOTS echo rank\n")
        done = sge.run("qsub", "-sync", "y", str(d / "pe.sh"), check=False)
        lines = (d / "pe.out").read_text().splitlines()
        assert done.returncode == 0 and lines[0] == f"slots 2 pe {PE}", (done, lines)
        assert lines[1].split()[:3] == [sge.host, "2", f"{QUEUE}@{sge.host}"], lines
        assert lines[2:] == ["rank", "rank"], lines

        # A running and a held job in qstat; qdel by name kills the running one.
        sge.run("qsub", "-N", "ferro_sleep", "-b", "y", "sleep", "1000")
        held = sge.run("qsub", "-terse", "-h", "-N", "ferro_held", "-b", "y", "true").stdout
        wait_for("running", lambda: "r" in sge.jobs().values())
        assert sge.jobs()[held.strip()] == "hqw", sge.jobs()
        print(sge.run("qstat").stdout.rstrip())
        assert re.search(r"^job_name: +ferro_sleep$",
                         sge.run("qstat", "-j", "ferro_sleep").stdout, re.M)

        def sleepers():
            return [pid for pid in _proc_pids() if _environ(pid).get("SGE_ROOT") == str(d)
                    and _environ(pid).get("JOB_NAME", "").startswith("ferro_")]
        wait_for("the job's sleep", sleepers)
        sge.run("qdel", "ferro_sleep", "ferro_held")
        wait_for("the jobs to leave qstat", lambda: not sge.jobs())
        wait_for("its sleep to die", lambda: not sleepers(), timeout=15)
        assert sge.run("qstat", "-j", "ferro_sleep", check=False).returncode == 1

        # Left running: stop() must delete it and kill its process.
        sge.run("qsub", "-N", "ferro_left", "-b", "y", "sleep", "1000")
        wait_for("the job's sleep", sleepers)
        began = time.monotonic()
    print(f"stopped in {time.monotonic() - began:.1f}s")
    alive = [pid for pid in daemons if Path(f"/proc/{pid}").exists()]
    assert not alive and not d.exists() and not sleepers(), (alive, d)
    print("ok")


if __name__ == "__main__":
    _self_check()
