"""The batch launchers, each against a real scheduler: `--launcher slurm` and
`--launcher pbs` (Torque's qsub, qstat and qdel from Debian's slurm-wlm-torque)
on the private single-node Slurm of slurm_local.py, `--launcher sge` on the
private Grid Engine cell of sge_local.py."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
import signal
import threading
import time

import pytest

import kernel_helpers as kh
from kernel_helpers import error_text, ok, run, stream_text, value
from cluster_helpers import gone_within, status


def all_text(outputs):
    return kh.all_text(outputs)


@pytest.fixture
def torque(slurm):
    """The private Slurm, with Torque's qsub, qstat and qdel translating to it."""
    if not all(os.access(f"/usr/bin/{tool}", os.X_OK) for tool in ("qsub", "qstat", "qdel")):
        pytest.skip("needs Torque's commands over Slurm: apt install slurm-wlm-torque")
    return slurm


def job_fields(slurm, job):
    """`scontrol show job`'s fields of one job, as a dict."""
    text = slurm.run("scontrol", "show", "job", job).stdout
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", text))


def wait_no_jobs(scheduler, seconds=30):
    """The jobs a private Slurm or Grid Engine still has once they are gone, or
    `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while scheduler.jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    return scheduler.jobs()


def test_the_slurm_launcher_submits_a_batch_job(start_kernel, slurm):
    km, kc = start_kernel(env=dict(slurm.env))
    reply, outputs = run(kc, "%cluster start -n 3 --launcher slurm --walltime 00:30:00 --account physics",
                         timeout=240)
    ok(reply, outputs)
    assert "Cluster ready: 3 engines started by Slurm" in all_text(outputs), all_text(outputs)
    [(job, state)] = slurm.jobs().items()
    assert state == "RUNNING"
    fields = job_fields(slurm, job)
    assert (fields["NumTasks"], fields["TimeLimit"], fields["Account"]) == ("3", "00:30:00", "physics"), fields
    reply, outputs = run(kc, "%cluster status")
    text = stream_text(outputs)
    # Ranks are the Slurm task ids; the engines learnt the key from the job's
    # environment, and their cells do not see it.
    assert sorted(re.findall(r"ready\s+\d+\s+\S+ s\s+(\d)$", text, re.M)) == ["0", "1", "2"], text
    reply, outputs = run(kc, "%%parallel cluster --out seen\n"
                             "(std::env::var(\"SLURM_JOB_ID\").unwrap_or_default(), "
                             "std::env::var(\"SLURM_PROCID\").unwrap_or_default(), "
                             "std::env::var(\"FERROCELL_CONNECTION\").is_ok())", timeout=120)
    ok(reply, outputs)
    assert value(kc, "seen") == f'[("{job}", "0", false), ("{job}", "1", false), ("{job}", "2", false)]'
    engines = [int(p) for p in re.findall(r"^\s+\d+\s+\S+\s+(\d+)\s+\d+\s+ready", text, re.M)]
    ok(*run(kc, "%cluster stop"))
    assert gone_within(engines, 10), [p for p in engines if kh.alive(p)]
    deadline = time.monotonic() + 30
    while slurm.jobs() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert slurm.jobs() == {}


def test_a_kernel_shut_down_cancels_its_slurm_job_even_without_its_controller(start_kernel, slurm):
    km, kc = start_kernel(env=dict(slurm.env))
    reply, outputs = run(kc, "%cluster start -n 1 --launcher slurm", timeout=240)
    ok(reply, outputs)
    assert len(slurm.jobs()) == 1
    controller, path, engines = status(kc)
    # The controller dies first: the kernel's own leftovers cancel the job by name.
    os.kill(controller, signal.SIGKILL)
    km.shutdown_kernel(now=False)
    # Well before its engines would notice the silent controller (10 s) and end it.
    deadline = time.monotonic() + 6
    while slurm.jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs() == {}
    assert not path.exists()


def test_the_slurm_launcher_runs_srun_inside_an_allocation(start_kernel, slurm):
    granted = slurm.run("salloc", "-N1", "-n4", "--no-shell")
    job = re.search(r"Granted job allocation (\d+)", granted.stdout + granted.stderr).group(1)
    try:
        env = dict(slurm.env, SLURM_JOB_ID=job, SLURM_JOB_NODELIST=slurm.hostname)
        km, kc = start_kernel(env=env)
        reply, outputs = run(kc, "%cluster start -n 2 --launcher slurm", timeout=240)
        ok(reply, outputs)
        reply, outputs = run(kc, "%%parallel cluster --out seen\n"
                                 "(rank, std::env::var(\"SLURM_JOB_ID\").unwrap_or_default(), "
                                 "std::env::var(\"SLURM_STEP_ID\").is_ok())", timeout=120)
        ok(reply, outputs)
        # Two tasks of one step in the allocation the kernel runs in.
        assert value(kc, "seen") == f'[(0, "{job}", true), (1, "{job}", true)]'
        assert len(slurm.jobs()) == 1
        ok(*run(kc, "%cluster stop"))
        # A step needing more tasks than the allocation has fails the start clearly.
        reply, outputs = run(kc, "%cluster start -n 9 --launcher slurm", timeout=120)
        assert reply["content"]["status"] == "error"
        assert "srun (9 tasks in job" in error_text(reply["content"]), error_text(reply["content"])
    finally:
        slurm.run("scancel", job, check=False)


def test_the_pbs_launcher_submits_one_job_and_shows_its_state_while_it_waits(start_kernel, torque):
    # Every CPU of the node is taken: the PBS job waits in the queue at first.
    blocker = torque.run("sbatch", "--parsable", "--output=/dev/null", f"-n{torque.cpus}", "--wrap", "sleep 300").stdout.strip()
    try:
        km, kc = start_kernel(env=dict(torque.env))
        got = {}
        start = threading.Thread(target=lambda: got.update(zip(
            ("reply", "outputs"),
            run(kc, "%cluster start -n 3 --launcher pbs --walltime 00:20:00 "
                    f"--queue {torque.partition} --account physics", timeout=240))))
        start.start()
        deadline = time.monotonic() + 60
        while len(torque.jobs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        [job] = [j for j in torque.jobs() if j != blocker]
        time.sleep(4)  # the progress line is refreshed every second once the wait is noticed
        torque.run("scancel", blocker)
        start.join(240)
    finally:
        torque.run("scancel", blocker, check=False)
    reply, outputs = got["reply"], got["outputs"]
    ok(reply, outputs)
    waiting = "\n".join(kh.progress_texts(outputs))
    assert f"PBS job {job}: queued" in waiting, waiting
    assert "Cluster ready: 3 engines started in a PBS job by mpiexec" in all_text(outputs), all_text(outputs)

    # The script's #PBS directives reached the scheduler: name, tasks, time, queue, account.
    fields = job_fields(torque, job)
    assert re.fullmatch(r"ferro-[0-9a-f]{9}", fields["JobName"]), fields
    assert (fields["NumTasks"], fields["TimeLimit"], fields["Partition"], fields["Account"]) == (
        "3", "00:20:00", torque.partition, "physics"), fields
    assert "R" == re.search(r"job_state = (\w)", torque.run("qstat", "-f", job).stdout).group(1)

    # Ranks are MPI's (mpiexec inside the job); the key came in the environment
    # and the cells do not see it.
    reply, outputs = run(kc, "%%parallel cluster --out seen\n"
                             "(rank, std::env::var(\"SLURM_JOB_ID\").unwrap_or_default(), "
                             "std::env::var(\"OMPI_COMM_WORLD_RANK\").unwrap_or_default(), "
                             "std::env::var(\"FERROCELL_CONNECTION\").is_ok())", timeout=120)
    ok(reply, outputs)
    assert value(kc, "seen") == f'[(0, "{job}", "0", false), (1, "{job}", "1", false), (2, "{job}", "2", false)]'
    _, _, engines = status(kc)
    ok(*run(kc, "%cluster stop"))
    assert gone_within([p for _, p, _ in engines], 10)
    assert wait_no_jobs(torque) == {}


def test_a_kernel_shut_down_deletes_its_pbs_job_even_without_its_controller(start_kernel, torque):
    km, kc = start_kernel(env=dict(torque.env))
    ok(*run(kc, "%cluster start -n 1 --launcher pbs", timeout=240))
    assert len(torque.jobs()) == 1
    controller, path, engines = status(kc)
    os.kill(controller, signal.SIGKILL)
    km.shutdown_kernel(now=False)
    # qdel by the id qstat lists under the job's name, well before the engine
    # would end the job itself.
    assert wait_no_jobs(torque, 6) == {}
    assert not path.exists()


def test_a_pbs_job_the_scheduler_refuses_fails_the_start_with_its_words(start_kernel, torque):
    km, kc = start_kernel(env=dict(torque.env, FERROCELL_QSUB="-l mem=999999999"))
    began = time.monotonic()
    reply, outputs = run(kc, "%cluster start -n 2 --launcher pbs", timeout=120)
    assert reply["content"]["status"] == "error"
    text = error_text(reply["content"])
    assert "0 of 2 engines are ready" in text and "PBS job ferro-" in text, text
    assert "sbatch" in text, text  # the scheduler's own message, through qsub
    assert time.monotonic() - began < 60
    assert torque.jobs() == {}
    # The kernel goes on, and a good start afterwards works.
    assert value(kc, "40 + 2") == "42"


def test_batch_options_are_checked_before_anything_is_submitted(start_kernel, slurm):
    km, kc = start_kernel(env=dict(slurm.env))
    for line, words in [
        ("%cluster start -n 2 --queue q", "are for the launchers that submit a batch job"),
        ("%cluster start -n 2 --launcher pbs --walltime '1;reboot'", "--walltime takes HH:MM:SS"),
        ("%cluster start -n 2 --launcher pbs --account 'a\n#PBS -l x'", "--account takes"),
        ("%cluster start -n 2 --launcher sbatch", "unknown launcher `sbatch`: local, ssh, mpi, slurm, pbs"),
    ]:
        reply, outputs = run(kc, line)
        assert reply["content"]["status"] == "error", line
        assert words in error_text(reply["content"]), error_text(reply["content"])
    assert slurm.jobs() == {}


def sge_job_ids(sge):
    return {key.split(".")[0] for key in sge.jobs()}


def test_the_sge_launcher_runs_engines_as_an_array_job_and_shows_its_state(start_kernel, sge):
    # Every slot of the queue is taken: the engines' job waits at first.
    blocker = sge.run("qsub", "-terse", "-b", "y", "-o", "/dev/null", "-j", "y",
                      "-t", f"1-{sge.slots}", "sleep", "300").stdout.strip().split(".")[0]
    try:
        km, kc = start_kernel(env=dict(sge.env))
        got = {}
        start = threading.Thread(target=lambda: got.update(zip(
            ("reply", "outputs"),
            run(kc, "%cluster start -n 3 --launcher sge --walltime 00:20:00 "
                    f"--queue {sge.queue} --account physics", timeout=240))))
        start.start()
        deadline = time.monotonic() + 60
        while len(sge_job_ids(sge)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        [job] = sge_job_ids(sge) - {blocker}
        time.sleep(4)  # the progress line is refreshed every second once the wait is noticed
        sge.run("qdel", blocker)
        start.join(240)
    finally:
        sge.run("qdel", blocker, check=False)
    reply, outputs = got["reply"], got["outputs"]
    ok(reply, outputs)
    waiting = "\n".join(kh.progress_texts(outputs))
    assert f"Grid Engine job {job}: queued" in waiting, waiting
    assert "Cluster ready: 3 engines started as a Grid Engine array job" in all_text(outputs), all_text(outputs)

    # The script's #$ directives reached the scheduler; the key did not, although
    # `qstat -j` shows a job's environment to any user.
    details = sge.run("qstat", "-j", job).stdout
    _, path, _ = status(kc)
    key = json.loads(path.read_text())["key"]
    assert key not in details and key.encode().hex() not in details
    # The engines read a private copy of the connection file, which goes with the job.
    [copy] = list((Path(os.environ["FERROCELL_CACHE"]) / "sge").glob("ferrocell-*.json"))
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert re.search(r"^job_name:\s+ferrocell-[0-9a-f]{32}$", details, re.M), details
    assert re.search(r"^account:\s+physics$", details, re.M), details
    assert re.search(r"^hard resource_list:\s+h_rt=1200$", details, re.M), details
    assert re.search(r"^hard_queue_list:\s+all\.q$", details, re.M), details

    # Ranks are the array's task ids less one; the key came in the environment.
    reply, outputs = run(kc, "%%parallel cluster --out seen\n"
                             "(rank, std::env::var(\"JOB_ID\").unwrap_or_default(), "
                             "std::env::var(\"SGE_TASK_ID\").unwrap_or_default(), "
                             "std::env::var(\"FERROCELL_CONNECTION\").is_ok())", timeout=120)
    ok(reply, outputs)
    assert value(kc, "seen") == (f'[(0, "{job}", "1", false), (1, "{job}", "2", false), '
                                 f'(2, "{job}", "3", false)]')
    _, _, engines = status(kc)
    ok(*run(kc, "%cluster stop"))
    assert not copy.exists()
    assert gone_within([p for _, p, _ in engines], 10)
    assert wait_no_jobs(sge) == {}


def test_the_sge_launcher_with_a_parallel_environment_starts_mpi_ranks(start_kernel, sge):
    km, kc = start_kernel(env=dict(sge.env))
    reply, outputs = run(kc, f"%cluster start -n 2 --launcher sge --pe {sge.pe}", timeout=240)
    ok(reply, outputs)
    assert "started in a Grid Engine job by mpirun, as MPI ranks" in all_text(outputs), all_text(outputs)
    reply, outputs = run(kc, "%%parallel cluster --out seen\n"
                             "(rank, std::env::var(\"OMPI_COMM_WORLD_RANK\").unwrap_or_default(), "
                             "std::env::var(\"NSLOTS\").unwrap_or_default())", timeout=120)
    ok(reply, outputs)
    assert value(kc, "seen") == '[(0, "0", "2"), (1, "1", "2")]'
    ok(*run(kc, "%cluster stop"))
    assert wait_no_jobs(sge) == {}


def test_a_kernel_shut_down_deletes_its_sge_job_even_without_its_controller(start_kernel, sge):
    km, kc = start_kernel(env=dict(sge.env))
    ok(*run(kc, "%cluster start -n 2 --launcher sge", timeout=240))
    assert len(sge_job_ids(sge)) == 1
    controller, path, engines = status(kc)
    os.kill(controller, signal.SIGKILL)
    km.shutdown_kernel(now=False)
    assert wait_no_jobs(sge, 6) == {}
    assert not path.exists()


def test_an_sge_job_the_scheduler_refuses_fails_the_start_with_its_words(start_kernel, sge):
    km, kc = start_kernel(env=dict(sge.env))
    began = time.monotonic()
    reply, outputs = run(kc, "%cluster start -n 2 --launcher sge --queue nosuch", timeout=120)
    assert reply["content"]["status"] == "error"
    text = error_text(reply["content"])
    assert "0 of 2 engines are ready" in text and "Grid Engine job ferrocell-" in text, text
    assert "nosuch" in text, text  # qsub's own words
    assert time.monotonic() - began < 60
    assert sge.jobs() == {}
    assert value(kc, "40 + 2") == "42"
