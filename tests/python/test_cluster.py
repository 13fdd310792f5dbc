"""`%cluster` and `%%parallel cluster`: a controller and engines started by the
local launcher, reached over TCP with every message signed."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import zmq
from jupyter_client.session import Session

import kernel_helpers as kh
from kernel_helpers import error_text, ok, run, stream_text, value
from kernel_helpers import slow_each, tables
from cluster_helpers import gone_within, start_cluster, status


def all_text(outputs):
    return kh.all_text(outputs)


def test_a_local_cluster_runs_cells_and_stops_without_orphans(kc):
    controller, path, engines = start_cluster(kc)
    assert len(engines) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the key
    info = json.loads(path.read_text())
    assert info["ip"] == "127.0.0.1" and len(info["key"]) >= 32

    ok(*run(kc, "let offset = 7u64;"))
    reply, outputs = run(kc, textwrap.dedent("""\
        %%parallel cluster
        println!("rank {rank} of {size}");
        (rank, std::process::id() as u64 + offset)
        """), timeout=60)
    ok(reply, outputs)
    assert sorted(stream_text(outputs).splitlines()) == ["[0] rank 0 of 2", "[1] rank 1 of 2"]
    [table] = tables(outputs)
    assert "2 ranks on 2 engines" in table["text/plain"]
    workers = sorted(w for _, _, w in engines)
    shown = sorted(int(v) - 7 for v in re.findall(r"\(\d, (\d+)\)", table["text/plain"]))
    assert shown == workers, (table["text/plain"], engines)

    reply, outputs = run(kc, "%%parallel cluster --each 0..100_000u64 --out shifted\nitem + offset", timeout=60)
    ok(reply, outputs)
    assert "100000 items on 2 engines" in tables(outputs)[0]["text/plain"]
    assert value(kc, "shifted.iter().enumerate().all(|(i, v)| *v == i as u64 + 7)") == "true"

    reply, outputs = run(kc, "%%parallel cluster --targets 1 --out one\nrank + 10")
    ok(reply, outputs)
    assert "1 ranks on 1 engines" in tables(outputs)[0]["text/plain"]
    assert value(kc, "one") == "[10]"

    reply, outputs = run(kc, "%%parallel cluster\nif rank == 1 { panic!(\"engine one gives up\"); }\nrank")
    assert reply["content"]["ename"] == "ParallelError"
    assert "rank 1: panicked: engine one gives up" in error_text(reply["content"])

    everything = [controller] + [p for _, p, _ in engines] + [w for _, _, w in engines]
    assert all(kh.alive(p) for p in everything)
    reply, outputs = run(kc, "%cluster stop")
    ok(reply, outputs)
    assert gone_within(everything), [p for p in everything if kh.alive(p)]
    assert not path.exists()


def test_parallel_cluster_starts_a_local_cluster_when_there_is_none(kc):
    reply, outputs = run(kc, "%%parallel cluster --out ranks\nrank * 2", timeout=180)
    ok(reply, outputs)
    assert "starting" in stream_text(outputs, "stderr")
    cores = os.cpu_count()
    assert value(kc, "ranks.len()") == str(cores)


def test_an_engine_killed_mid_run_loses_no_item(kc):
    _, _, engines = start_cluster(kc)
    victim = engines[1][1]  # the engine process itself, not only its worker
    msg_id = kc.execute(slow_each("cluster", 60, out="tripled", value="item * 3"))
    kh.wait_for_output(kc, msg_id)
    time.sleep(0.3)
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    reply, outputs = kh.wait(kc, msg_id, timeout=60)
    ok(reply, outputs)
    err = stream_text(outputs, "stderr")
    assert "worker 1: engine 1" in err and "no heartbeat" in err, err
    assert "unfinished items run on the other workers" in err
    assert value(kc, "tripled.iter().enumerate().all(|(i, v)| *v == 3 * i as u64)") == "true"
    assert value(kc, "tripled.len()") == "60"
    # The controller noticed within its 3 s, and says so.
    reply, outputs = run(kc, "%cluster status")
    text = stream_text(outputs)
    assert re.search(r"^\s+1\s.*lost: \(pid \d+ on \S+\) sent no heartbeat for [0-2]\.\d s", text, re.M), text
    assert time.monotonic() - killed < 20


_seq = itertools.count(1)


def cluster_msg(kind, to="", seq=None, **fields):
    """A cluster message's content: addressed to a link session (empty only for a
    greeting) and numbered in the sender's sequence."""
    return {"kind": kind, "digest": "", "to": to, "seq": next(_seq) if seq is None else seq,
            **fields}


def test_values_over_the_message_limit_travel_in_parts(start_kernel):
    # Every socket of the kernel and the cluster takes at most 1 MiB here: the 3 MB
    # session value sent to the engines and the 3 MB results coming back are split
    # into parts and put back together.
    km, kc = start_kernel(env={"FERROCELL_MAX_MESSAGE_MIB": "1"})
    start_cluster(kc, 2)
    ok(*run(kc, "let data: Vec<u8> = (0..3_000_000).map(|i| (i % 7) as u8).collect();"))
    ok(*run(kc, "%%parallel cluster --out big\nlet mut v = data.clone(); v[0] = rank as u8 + 10; v",
            timeout=180))
    assert value(kc, "big.iter().map(|v| v.len()).sum::<usize>()") == "6000000"
    assert value(kc, "(big[0][0], big[1][0], big[1][2_999_999] == data[2_999_999])") == \
        "(10, 11, true)"


def test_forged_messages_are_refused_by_controller_and_engine(kc, tmp_path):
    _, path, engines = start_cluster(kc, 1)
    info = json.loads(path.read_text())
    # A context of its own, so that its sockets go with it (not jupyter_client's).
    ctx = zmq.Context()

    def ask_controller(key: bytes):
        sock = ctx.socket(zmq.DEALER)
        sock.connect(f"tcp://127.0.0.1:{info['client_port']}")
        session = Session(key=key, signature_scheme="hmac-sha256")
        session.send(sock, "cluster", cluster_msg("status"))
        got = sock.poll(2000)
        sock.close(linger=0)
        return got

    # Signed with the cluster's key, a request is answered; unsigned or with another
    # key it is dropped unanswered.
    assert ask_controller(info["key"].encode())
    assert not ask_controller(b"")
    assert not ask_controller(b"not-the-key")

    # An engine with another rustc is refused when it registers, with the reason.
    sock = ctx.socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{info['engine_port']}")
    signed = Session(key=info["key"].encode(), signature_scheme="hmac-sha256")
    signed.send(sock, "cluster", cluster_msg(
        "register", host="elsewhere", pid=1, mpi_rank=None,
        versions={"ferrocell": "0.1.0", "rustc": "rustc 1.0.0 (old)", "target": "x86_64-unknown-linux-gnu"}))
    assert sock.poll(5000)
    _, answer = signed.feed_identities(sock.recv_multipart())
    content = signed.deserialize(answer)["content"]
    sock.close(linger=0)
    assert content["kind"] == "refused", content
    assert "rustc is rustc 1.0.0 (old), the cluster's is rustc" in content["why"], content

    # An engine obeys only its controller's key. A stand-in controller registers a
    # new engine, then sends it a RUN for a library that does not exist: signed with
    # the right key the worker answers (LOAD_ERROR); forged, nothing runs at all.
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    key = b"stand-in-key"
    fake = dict(info, engine_port=port, client_port=port, key=key.decode())
    fake_path = tmp_path / "fake-cluster.json"
    fake_path.write_text(json.dumps(fake))
    good = Session(key=key, signature_scheme="hmac-sha256")
    engine = subprocess.Popen([str(kh.BINARY), "engine", "--file", str(fake_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert router.poll(60_000), "the engine did not register"
        ident, *frames = router.recv_multipart()
        _, register = good.feed_identities(frames)
        register = good.deserialize(register)
        assert register["content"]["kind"] == "register"
        engine_session = register["header"]["session"]
        good.send(router, "cluster", cluster_msg("registered", to=engine_session, engine=0),
                  ident=[ident])
        digest = __import__("hashlib").sha256(b"/nonexistent/lib.so\0entry").hexdigest()

        def wait_for_worker(wait):
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not router.poll(200):
                    continue
                _, *frames = router.recv_multipart()
                _, msg = good.feed_identities(frames)
                content = good.deserialize(msg, content=True)["content"]
                if content["kind"] == "from_worker":
                    return content["tag"]
            return None

        # (An engine leaves a controller silent for 10 s: the whole exchange is quicker.)
        def run_on_engine(session, wait, to=engine_session, seq=None, raw=None):
            content = cluster_msg("to_worker", to=to, seq=seq, tag=101) | {"digest": digest}
            if raw is None:
                raw = session.serialize(session.msg("cluster", content), ident=[ident])
                raw.append(b"/nonexistent/lib.so\0entry")
            router.send_multipart(raw)
            return wait_for_worker(wait), raw, content

        assert run_on_engine(Session(key=b"forged", signature_scheme="hmac-sha256"), 1.5)[0] is None
        assert run_on_engine(Session(key=b"", signature_scheme="hmac-sha256"), 1.5)[0] is None
        # Signed with the key but meant for another engine (or an earlier run of this
        # one), or not addressed at all: nothing runs.
        assert run_on_engine(good, 1.5, to="another-engine")[0] is None
        assert run_on_engine(good, 1.5, to="")[0] is None
        tag, raw, content = run_on_engine(good, 5)
        assert tag == 9  # LOAD_ERROR: the real key and address get through
        # The same message again, and a freshly signed one with a used number: replays.
        assert run_on_engine(good, 1.5, raw=raw)[0] is None
        assert run_on_engine(good, 1.5, seq=content["seq"])[0] is None
    finally:
        engine.kill()
        log = engine.communicate()[0]
        router.close(linger=0)
        ctx.destroy(linger=0)
    assert "dropped a message that was not the controller's" in log, log
    assert "addressed to another process" in log, log
    assert "an unaddressed message that is not fresh" in log, log
    assert "(a replay)" in log, log


def test_an_engine_that_does_not_read_is_dropped_and_holds_up_no_one(kc):
    # The controller queues each peer's messages apart and never waits on one: a
    # stand-in engine that registers and then reads nothing is flooded (through a
    # stand-in kernel) until its queue is full, and is dropped as lost, while the
    # real kernel's requests are answered at once throughout.
    _, path, _ = start_cluster(kc, 1)
    info = json.loads(path.read_text())
    key = info["key"].encode()
    ctx = zmq.Context()
    try:
        kernel_side = Session(key=key, signature_scheme="hmac-sha256")
        client = ctx.socket(zmq.DEALER)
        client.connect(f"tcp://127.0.0.1:{info['client_port']}")
        kernel_side.send(client, "cluster", cluster_msg("status"))
        assert client.poll(5000)
        reply = kernel_side.deserialize(kernel_side.feed_identities(client.recv_multipart())[1])
        controller = reply["header"]["session"]
        engine_side = Session(key=key, signature_scheme="hmac-sha256")
        engine = ctx.socket(zmq.DEALER)
        engine.setsockopt(zmq.RCVHWM, 1)
        engine.setsockopt(zmq.RCVBUF, 4096)
        engine.connect(f"tcp://127.0.0.1:{info['engine_port']}")
        engine_side.send(engine, "cluster", cluster_msg(
            "register", host="stand-in", pid=os.getpid(), mpi_rank=None,
            versions=reply["content"]["versions"]))
        assert engine.poll(5000)
        registered = engine_side.deserialize(engine_side.feed_identities(engine.recv_multipart())[1])
        assert registered["content"]["kind"] == "registered", registered
        stand_in = registered["content"]["engine"]
        payload = b"x" * 65536
        digest = __import__("hashlib").sha256(payload).hexdigest()
        slowest, text, deadline = 0.0, "", time.monotonic() + 120
        while time.monotonic() < deadline:
            for _ in range(100):
                content = cluster_msg("send", to=controller, engine=stand_in, tag=101) | {"digest": digest}
                raw = kernel_side.serialize(kernel_side.msg("cluster", content))
                client.send_multipart(raw + [payload])
            # The stand-in engine still beats: only its reading stops.
            engine_side.send(engine, "cluster", cluster_msg("heartbeat", to=controller))
            started = time.monotonic()
            reply, outputs = run(kc, "%cluster status")
            slowest = max(slowest, time.monotonic() - started)
            ok(reply, outputs)
            text = stream_text(outputs)
            if "does not read what it is sent" in text:
                break
        assert re.search(rf"^\s+{stand_in}\s.*lost: \(pid {os.getpid()} on stand-in\) does not read what it is "
                         r"sent \(its queue is full\)", text, re.M), text
        assert slowest < 2.5, f"%cluster status took {slowest:.1f} s while an engine did not read"
        # The real engine runs cells as before.
        reply, outputs = run(kc, "%%parallel cluster --out r\nrank * 10", timeout=60)
        ok(reply, outputs)
        assert value(kc, "r") == "[0]"
    finally:
        ctx.destroy(linger=0)


def test_a_dead_controller_fails_the_cell_clearly_and_the_kernel_goes_on(kc):
    controller, _, engines = start_cluster(kc)
    ok(*run(kc, "let kept = 3u8;"))
    msg_id = kc.execute(slow_each("cluster", 400))
    kh.wait_for_output(kc, msg_id)
    killed = time.monotonic()
    os.kill(controller, signal.SIGKILL)
    reply, outputs = kh.wait(kc, msg_id, timeout=60)
    assert time.monotonic() - killed < 10
    assert reply["content"]["ename"] == "ParallelError"
    assert "the controller fell silent" in kh.all_text(outputs)
    reply, outputs = run(kc, "%cluster status", timeout=30)
    assert reply["content"]["ename"] == "ClusterError"
    assert f"the controller (pid {controller}" in reply["content"]["evalue"]
    assert "may have died" in reply["content"]["evalue"]
    assert value(kc, "kept + 1") == "4"
    # The engines do not outlive their controller for long, and a new cluster starts.
    ok(*run(kc, "%cluster stop", timeout=30))
    assert gone_within([p for _, p, _ in engines], 15)
    start_cluster(kc, 1)


def sh(*args):
    subprocess.run(args, check=True, capture_output=True, text=True)


def test_an_engine_in_another_network_namespace_joins_over_tcp(kc, namespace, tmp_path):
    host_ip, ns = namespace
    reply, outputs = run(kc, f"%cluster start -n 1 --ip {host_ip}", timeout=180)
    ok(reply, outputs)
    reply, outputs = run(kc, "%cluster status")
    path = Path(re.search(r"connection file (\S+)\)", stream_text(outputs)).group(1))
    # The other host gets a copy of the connection file and a cache of its own: it
    # builds its own runner, and loads only libraries the controller sends it.
    copied = tmp_path / "cluster.json"
    copied.write_text(path.read_text())
    os.chmod(copied, 0o600)
    other_cache = tmp_path / "other-host-cache"
    env = dict(os.environ, FERROCELL_CACHE=str(other_cache))
    with open(tmp_path / "engine.log", "w") as log:
        engine = subprocess.Popen(["ip", "netns", "exec", ns, str(kh.BINARY), "engine", "--file", str(copied)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            reply, outputs = run(kc, "%cluster status")
            if len(re.findall(r" ready ", stream_text(outputs))) == 2:
                break
            assert engine.poll() is None, (tmp_path / "engine.log").read_text()
            assert time.monotonic() < deadline, stream_text(outputs)
            time.sleep(1)
        ok(*run(kc, "fn triple(x: u64) -> u64 { x * 3 }\nlet base = 5u64;"))
        reply, outputs = run(kc, "%%parallel cluster --out got\ntriple(base) + rank as u64", timeout=120)
        ok(reply, outputs)
        assert value(kc, "got") == "[15, 16]"
        reply, outputs = run(kc, "%%parallel cluster --each 0..1000u64 --out all\ntriple(item)", timeout=120)
        ok(reply, outputs)
        assert value(kc, "all.iter().enumerate().all(|(i, v)| *v == 3 * i as u64)") == "true"
        shipped = list(other_cache.glob("*/engine-libs/libfc_*.so"))
        assert shipped, "the engine in the other namespace was sent no library"
    finally:
        engine.kill()
        engine.wait()
        run(kc, "%cluster stop", timeout=30)


def test_the_mpi_launcher_starts_engines_as_mpi_ranks(kc):
    if shutil.which("mpirun") is None:
        pytest.skip("needs mpirun (Open MPI: apt install openmpi-bin; .ci/run installs it)")
    reply, outputs = run(kc, "%cluster start -n 4 --launcher mpi", timeout=180)
    ok(reply, outputs)
    assert "Cluster ready: 4 engines started by mpirun, as MPI ranks" in all_text(outputs), all_text(outputs)
    reply, outputs = run(kc, "%cluster status")
    text = stream_text(outputs)
    mpi_ranks = sorted(int(r) for r in re.findall(r" ready .* s\s+(\d+)$", text, re.M))
    assert mpi_ranks == [0, 1, 2, 3], text
    engines = [int(p) for p in re.findall(r"^\s+\d+\s+\S+\s+(\d+)\s", text, re.M)]
    # The cell's ranks are the MPI ranks mpirun gave the engines.
    reply, outputs = run(kc, textwrap.dedent("""\
        %%parallel cluster --out seen
        let mpi: usize = std::env::var("OMPI_COMM_WORLD_RANK").unwrap().parse().unwrap();
        let world: usize = std::env::var("OMPI_COMM_WORLD_SIZE").unwrap().parse().unwrap();
        (rank == mpi, size == world)
        """), timeout=120)
    ok(reply, outputs)
    assert value(kc, "seen.iter().all(|(a, b)| *a && *b) && seen.len() == 4") == "true"
    ok(*run(kc, "%cluster stop", timeout=30))
    assert gone_within(engines, 10)
    assert not any("mpirun" in open(f"/proc/{p}/cmdline").read()
                   for p in kh.descendants(kh.os.getpid()) if kh.alive(p))


def test_persist_keeps_what_a_cell_binds_on_each_engine(kc):
    start_cluster(kc)
    ok(*run(kc, "let scale = 10u64;"))
    reply, outputs = run(kc, textwrap.dedent("""\
        %%parallel cluster --persist
        let table: Vec<u64> = (0..1000).map(|i| i * scale + rank as u64).collect();
        println!("rank {rank} of {size} built its table");
        """), timeout=60)
    ok(reply, outputs)
    assert sorted(stream_text(outputs).splitlines()) == [
        "[0] rank 0 of 2 built its table", "[1] rank 1 of 2 built its table"]
    assert tables(outputs) == []  # the body's value is ()
    # Later --persist cells find each engine's own table, built once.
    reply, outputs = run(kc, "%%parallel cluster --persist\ntable[1] + table.len() as u64", timeout=60)
    ok(reply, outputs)
    [table] = tables(outputs)
    assert re.search(r"^\s+0\s+1010\s", table["text/plain"], re.M), table["text/plain"]
    assert re.search(r"^\s+1\s+1011\s", table["text/plain"], re.M), table["text/plain"]
    # The variable lives on the engines, not in the kernel's session.
    reply, outputs = run(kc, "table.len()")
    assert reply["content"]["ename"] == "CompileError"
    reply, _ = run(kc, "%%parallel cluster --persist --each 0..3u64\nitem")
    assert "does not combine" in reply["content"]["evalue"]
    # %reset forgets them with everything else.
    ok(*run(kc, "%reset"))
    reply, _ = run(kc, "%%parallel cluster --persist\ntable.len()", timeout=60)
    assert reply["content"]["ename"] == "CompileError"
    ok(*run(kc, "%cluster stop", timeout=30))


def test_the_ssh_launcher_starts_engines_on_another_host(start_kernel, namespace, tmp_path):
    """sshd runs in the other network namespace; the launcher reaches it over TCP,
    hands each engine the connection file on stdin, and the engines connect back."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        pytest.skip("needs sshd (apt install openssh-server; .ci/run installs it)")
    host_ip, ns = namespace
    ns_ip = host_ip[:-1] + "2"
    for name in ("host_key", "client_key"):
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name))
    (tmp_path / "authorized_keys").write_text((tmp_path / "client_key.pub").read_text())
    config = tmp_path / "sshd_config"
    config.write_text(textwrap.dedent(f"""\
        ListenAddress {ns_ip}
        Port 2222
        HostKey {tmp_path / 'host_key'}
        AuthorizedKeysFile {tmp_path / 'authorized_keys'}
        PermitRootLogin prohibit-password
        StrictModes no
        UsePAM no
        PidFile {tmp_path / 'sshd.pid'}
        """))
    Path("/run/sshd").mkdir(exist_ok=True)
    daemon = subprocess.Popen(["ip", "netns", "exec", ns, sshd, "-D", "-e", "-f", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        remote_cache = tmp_path / "remote-cache"
        km, kc = start_kernel(env={
            "FERROCELL_SSH": f"ssh -p 2222 -i {tmp_path / 'client_key'} "
                             "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "FERROCELL_REMOTE": f"env FERROCELL_CACHE={remote_cache} {kh.BINARY}",
        })
        # Loopback cannot be reached from another host: the launcher says so.
        reply, _ = run(kc, f"%cluster start -n 2 --launcher ssh --hosts {ns_ip}")
        assert reply["content"]["ename"] == "ClusterError"
        assert "--ip" in reply["content"]["evalue"]
        reply, outputs = run(kc, f"%cluster start -n 2 --launcher ssh --hosts {ns_ip} --ip {host_ip}",
                             timeout=180)
        ok(reply, outputs)
        assert "Cluster ready: 2 engines started over ssh" in all_text(outputs), all_text(outputs)
        reply, outputs = run(kc, "%cluster status")
        engines = [int(p) for p in re.findall(r"^\s+\d+\s+\S+\s+(\d+)\s", stream_text(outputs), re.M)]
        assert len(engines) == 2
        # The engines are sshd's, not the kernel's: they came over ssh.
        assert not set(engines) & set(kh.descendants(kh.kernel_pid(km)))
        assert set(engines) <= set(kh.descendants(daemon.pid))
        ok(*run(kc, "fn twice(x: usize) -> usize { 2 * x }"))
        reply, outputs = run(kc, "%%parallel cluster --out got\ntwice(rank)", timeout=120)
        ok(reply, outputs)
        assert value(kc, "got") == "[0, 2]"
        ok(*run(kc, "%cluster stop", timeout=30))
        assert gone_within(engines, 10)
    finally:
        daemon.kill()
        daemon.wait()


def wait_for_status(kc, done, seconds=60):
    """Polls `%cluster status` until `done(engines, text)` holds; returns both."""
    deadline = time.monotonic() + seconds
    while True:
        reply, outputs = run(kc, "%cluster status")
        ok(reply, outputs)
        text = stream_text(outputs)
        engines = [tuple(int(x) for x in row) for row in
                   re.findall(r"^\s+(\d+)\s+\S+\s+(\d+)\s+(\d+)\s+ready", text, re.M)]
        if done(engines, text):
            return engines, text
        assert time.monotonic() < deadline, text
        time.sleep(0.5)


def test_restart_replaces_engines_that_die_or_hang(kc):
    reply, outputs = run(kc, "%cluster start -n 2 --restart", timeout=180)
    ok(reply, outputs)
    controller, _, engines = status(kc)
    assert len(engines) == 2
    first, second = engines
    # A killed engine process is started again by its launcher and registers anew.
    os.kill(first[1], signal.SIGKILL)
    engines, text = wait_for_status(kc, lambda e, _: len(e) == 2 and first[1] not in [p for _, p, _ in e])
    assert re.search(rf"engine process \d \(pid {first[1]}\) killed by signal SIGKILL.*; started again \(restart 1\)",
                     text), text
    assert not kh.alive(first[1]) and not kh.alive(first[2])  # its worker went with it
    reply, outputs = run(kc, "%%parallel cluster --out ranks\nrank * 10", timeout=120)
    ok(reply, outputs)
    assert value(kc, "ranks") == "[0, 10]"
    # A hung engine is lost to heartbeats; its process is killed and started again.
    os.kill(second[1], signal.SIGSTOP)
    try:
        engines, text = wait_for_status(
            kc, lambda e, t: len(e) == 2 and second[1] not in [p for _, p, _ in e])
        assert re.search(rf"engine process \d \(pid {second[1]}\) killed by signal SIGKILL.*; started again \(restart 1\)",
                         text), text
    finally:
        if kh.alive(second[1]):
            os.kill(second[1], signal.SIGCONT)
    everything = [controller] + [p for _, p, _ in engines] + [w for _, _, w in engines]
    ok(*run(kc, "%cluster stop"))
    assert gone_within(everything), [p for p in everything if kh.alive(p)]
    assert not kh.alive(second[1])


def test_an_engine_that_keeps_dying_is_not_restarted_forever(kc, tmp_path):
    reply, outputs = run(kc, "%cluster start -n 1 --restart", timeout=180)
    ok(reply, outputs)
    killed = set()
    for attempt in range(4):
        # The engine just killed shows as ready until heartbeats lose it: wait for its successor.
        engines, _ = wait_for_status(kc, lambda e, _: len(e) == 1 and e[0][1] not in killed)
        killed.add(engines[0][1])
        os.kill(engines[0][1], signal.SIGKILL)
        wait_for_status(kc, lambda e, t: f"(restart {attempt + 1})" in t or "not started again" in t)
    _, text = wait_for_status(kc, lambda e, t: "not started again" in t and not e)
    assert re.search(r"engine process 0 \(pid \d+\) killed by signal SIGKILL.*; not started again: "
                     r"it was 3 times within 60 s already", text), text
    reply, outputs = run(kc, "%%parallel cluster\nrank")
    assert reply["content"]["status"] == "error"
    assert "no ready engine" in error_text(reply["content"]), error_text(reply["content"])
    ok(*run(kc, "%cluster stop"))


# The lecture's mpi4py reduction, with the `mpi` crate: building it needs Open MPI's
# headers (libopenmpi-dev) and libclang (libclang-dev) for its bindings.
MPI_DEP = ':dep mpi = { version = "0.8", default-features = false }'
MPI_REDUCTION = """\
%%parallel cluster --out sums
use mpi::traits::*;
// The first MPI cell of a worker starts MPI and keeps it for the worker's life.
if let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Serialized) {
    std::mem::forget(universe);
}
let world = mpi::topology::SimpleCommunicator::world();
let mut sum = 0i32;
world.all_reduce_into(&(world.rank() + 1), &mut sum, mpi::collective::SystemOperation::sum());
(world.rank(), world.size(), sum)
"""


def test_cells_use_mpi_on_engines_that_mpirun_started(kc):
    if not shutil.which("mpicc"):
        pytest.skip("needs Open MPI's development files (apt install libopenmpi-dev)")
    reply, outputs = run(kc, "%cluster start -n 4 --launcher mpi", timeout=240)
    ok(reply, outputs)
    reply, outputs = run(kc, MPI_DEP, timeout=900)
    ok(reply, outputs)
    # The communicator is the one mpirun set up: the engines' ranks and size.
    reply, outputs = run(kc, MPI_REDUCTION, timeout=240)
    ok(reply, outputs)
    assert value(kc, "sums") == "[(0, 4, 10), (1, 4, 10), (2, 4, 10), (3, 4, 10)]"
    # A later cell of the same workers finds MPI started and reduces again.
    reply, outputs = run(kc, MPI_REDUCTION.replace("world.rank() + 1", "10 * world.rank()"), timeout=240)
    ok(reply, outputs)
    assert value(kc, "sums") == "[(0, 4, 60), (1, 4, 60), (2, 4, 60), (3, 4, 60)]"
    _, _, engines = status(kc)
    reply, outputs = run(kc, "%cluster stop")
    ok(reply, outputs)
    assert gone_within([p for _, p, _ in engines] + [w for _, _, w in engines])
