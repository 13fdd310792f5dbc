"""Hostile input from outside: nothing a peer sends can crash, wedge or bloat the
kernel. Peers that misbehave are written by hand here, speaking ZMTP on raw TCP."""

from __future__ import annotations

import contextlib
import socket
import struct
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import kernel_helpers as kh
from kernel_helpers import of_type, ok, run, value

TIB = 1 << 40


def greeting() -> bytes:
    """A ZMTP 3.0 greeting with the NULL mechanism, as a client."""
    g = bytearray(64)
    g[0], g[9], g[10], g[11] = 0xFF, 0x7F, 3, 0
    g[12:16] = b"NULL"
    return bytes(g)


def ready(socket_type: bytes) -> bytes:
    """The NULL mechanism's READY command naming our socket type."""
    body = (bytes([5]) + b"READY" + bytes([11]) + b"Socket-Type"
            + struct.pack(">I", len(socket_type)) + socket_type)
    return bytes([0x04, len(body)]) + body


def long_frame_header(length: int, command: bool = False) -> bytes:
    return bytes([0x02 | (0x04 if command else 0)]) + struct.pack(">Q", length)


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(greeting())
    got = b""
    while len(got) < 64:
        chunk = s.recv(64 - len(got))
        assert chunk, "the kernel closed the connection during the greeting"
        got += chunk
    assert got[0] == 0xFF
    return s


def closed_by_peer(s: socket.socket, within: float = 10) -> bool:
    """Whether the other side closes the connection (reading what it still sends)."""
    s.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


@contextlib.contextmanager
def non_reader(port: int, kind: str, subscribe: bool = False):
    """A ZeroMQ peer on the kernel's `port` that takes (almost) nothing it is sent:
    a one-message receive queue and a 4 KiB socket buffer, never read."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(getattr(zmq, kind))
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    if subscribe:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


# The kernel's sockets and the type of peer each expects.
PORTS = [("shell_port", b"DEALER"), ("control_port", b"DEALER"), ("stdin_port", b"DEALER"),
         ("iopub_port", b"SUB"), ("hb_port", b"REQ")]


@pytest.mark.parametrize("port,peer", PORTS)
def test_a_frame_announcing_a_tebibyte_closes_only_that_connection(kernel, port, peer):
    km, kc = kernel
    info = km.get_connection_info()
    pid = kh.kernel_pid(km)
    before = kh.rss_kib(pid)
    # After the handshake: a message frame of 1 TiB.
    s = connect(info[port])
    s.sendall(ready(peer) + long_frame_header(TIB))
    assert closed_by_peer(s), f"{port}: the connection stayed open"
    # During the handshake: a command frame of 1 TiB instead of READY.
    s2 = connect(info[port])
    s2.sendall(long_frame_header(TIB, command=True))
    assert closed_by_peer(s2), f"{port}: the connection stayed open"
    # The kernel is alive, answers, and did not grow by anything near the announced size.
    assert kh.alive(pid)
    assert value(kc, "40 + 2") == "42"
    assert kh.rss_kib(pid) - before < 64 * 1024


def test_a_message_over_a_lowered_limit_is_refused_and_the_kernel_goes_on(start_kernel, tmp_path):
    log = tmp_path / "kernel.log"
    with open(log, "w") as err:
        km, kc = start_kernel(env={"FERROCELL_MAX_MESSAGE_MIB": "1", "RUST_LOG": "warn"},
                              stderr=err)
        ok(*run(kc, "let small = 1;"))
        # 2 MiB of code in one execute_request: over the limit, so no reply comes.
        big = "let s = \"" + "x" * (2 << 20) + "\";"
        msg_id = kc.execute(big)
        with pytest.raises(Exception):
            kh.shell_reply(kc, msg_id, time.monotonic() + 10)
        # The client reconnects; the kernel and its variables are still there.
        deadline = time.monotonic() + 60
        while True:
            try:
                assert value(kc, "small + 1", timeout=20) == "2"
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
    assert "over the 1048576-byte limit" in log.read_text()


def test_the_cluster_controller_survives_a_tebibyte_frame_on_both_ports(kc):
    import json

    from test_cluster import start_cluster

    controller, path, _ = start_cluster(kc, 1)
    info = json.loads(path.read_text())
    for port in ("client_port", "engine_port"):
        s = connect(info[port])
        s.sendall(ready(b"DEALER") + long_frame_header(TIB))
        assert closed_by_peer(s), f"{port}: the connection stayed open"
    assert kh.alive(controller)
    reply, outputs = run(kc, "%%parallel cluster\nrank + 40", timeout=120)
    ok(reply, outputs)
    assert "40" in kh.all_text(outputs)
    ok(*run(kc, "%cluster stop", timeout=60))


@pytest.mark.parametrize("msg_type,content", [
    ("complete_request", {"code": 5, "cursor_pos": "x"}),
    ("inspect_request", {"cursor_pos": 1}),
    ("is_complete_request", {"code": ["not", "text"]}),
])
def test_a_malformed_request_gets_an_error_reply(kc, msg_type, content):
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg)
    reply = kh.shell_reply(kc, msg["header"]["msg_id"], time.monotonic() + 10)
    assert reply["msg_type"] == msg_type.replace("_request", "_reply")
    assert reply["content"]["status"] == "error", reply["content"]
    assert reply["content"]["ename"] == "BadRequest"
    assert value(kc, "1 + 1") == "2"


def test_a_subscriber_that_never_reads_does_not_hold_up_the_kernel(kernel):
    km, kc = kernel
    with non_reader(km.get_connection_info()["iopub_port"], "SUB", subscribe=True):
        time.sleep(1)
        pid = kh.kernel_pid(km)
        # About 30 MB of output: far more than the stalled subscriber's buffers hold.
        code = 'let line = "x".repeat(1000);\nfor _ in 0..30_000 { println!("{line}"); }'
        reply, _ = run(kc, code, timeout=180)
        ok(reply)
        started = time.monotonic()
        assert value(kc, "6 * 7", timeout=30) == "42"
        answered = time.monotonic() - started
        assert answered < 10, f"a cell took {answered:.1f} s while a subscriber stalled"
        assert kh.rss_kib(pid) < 1024 * 1024, "the kernel grew past 1 GiB"


def test_the_heartbeat_answers_others_while_one_peer_never_reads(kernel):
    import zmq

    km, _ = kernel
    port = km.get_connection_info()["hb_port"]
    ping_socket = contextlib.closing(zmq.Context.instance().socket(zmq.REQ))
    with non_reader(port, "DEALER") as greedy, ping_socket as ping:
        ping.setsockopt(zmq.LINGER, 0)
        ping.setsockopt(zmq.RCVTIMEO, 5000)
        ping.connect(f"tcp://127.0.0.1:{port}")
        payload = b"p" * (1 << 20)
        for _ in range(64):  # 64 MiB of echoes it never reads
            greedy.send_multipart([b"", payload])
        worst = 0.0
        for _ in range(10):
            t0 = time.monotonic()
            ping.send(b"alive?")
            assert ping.recv() == b"alive?"
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.2)
        assert worst < 3, f"a heartbeat took {worst:.1f} s"


def test_pathological_nesting_is_a_clear_error_and_the_kernel_stays_up(kernel):
    km, kc = kernel
    pid = kh.kernel_pid(km)
    deep = "(" * 60_000 + "1" + ")" * 60_000
    reply, outputs = run(kc, deep, timeout=60)
    assert reply["content"]["status"] == "error"
    assert "nested 60000 levels" in kh.error_text(kh.of_type(outputs, "error")[0])
    reply, outputs = run(kc, "let b = " + "!" * 1_000_000 + "true;", timeout=60)
    assert reply["content"]["status"] == "error"
    # Completion and is_complete on such code answer too.
    content = kc.complete("(" * 5_000 + "x.", reply=True, timeout=30)["content"]
    assert content["status"] == "ok" and content["matches"] == []
    msg_id = kc.is_complete("{" * 60_000)
    content = kh.shell_reply(kc, msg_id, time.monotonic() + 30)["content"]
    assert content["status"] in ("incomplete", "invalid")
    assert kh.alive(pid)
    assert value(kc, "2 + 2") == "4"


def test_completion_after_non_ascii_text_answers(kc):
    ok(*run(kc, "let v = vec![1];"))
    for code in ["let v2 =\u00a0std::", "\u2192Vec::", "\u00abx\u00bb::y.", "let é = v.le"]:
        content = kc.complete(code, len(code), reply=True, timeout=30)["content"]
        assert content["status"] == "ok", (code, content)
    assert "len" in kc.complete("let é = v.le", reply=True, timeout=30)["content"]["matches"]
    assert value(kc, "v.len()") == "1"


# --- output that could wedge or bloat the kernel -------------------------------------


def test_invalid_utf8_and_millions_of_lines_in_one_write_are_decoded_quickly(kc):
    code = (
        "use std::io::Write;\n"
        "let bad = vec![0xffu8; 10_000_000];\n"
        "std::io::stdout().write_all(&bad).unwrap();\n"
        "let lines = \"x\\n\".repeat(5_000_000);\n"
        "std::io::stdout().write_all(lines.as_bytes()).unwrap();\n"
        "std::io::stdout().flush().unwrap();"
    )
    t0 = time.monotonic()
    reply, outputs = run(kc, code, timeout=240)
    ok(reply, outputs)
    took = time.monotonic() - t0
    text = kh.stream_text(outputs)
    assert text.count("\ufffd") == 10_000_000 and text.count("x\n") == 5_000_000
    assert value(kc, "1") == "1"
    print(f"10 MB invalid UTF-8 + 5 M lines: {took:.1f} s")


def test_a_detached_thread_printing_forever_keeps_the_kernel_bounded(kernel):
    km, kc = kernel
    pid = kh.kernel_pid(km)
    ok(*run(kc, "let _ = std::thread::spawn(|| loop { println!(\"{}\", \"y\".repeat(1000)); });"))
    before = kh.rss_kib(pid)
    time.sleep(15)
    grown = kh.rss_kib(pid) - before
    assert grown < 200 * 1024, f"the kernel grew by {grown // 1024} MiB in 15 s"
    # The next cell still runs (it also delivers what the thread printed meanwhile).
    reply, _ = run(kc, "40 + 2", timeout=120)
    ok(reply)
    assert kh.alive(pid)


# --- processes a cell starts ----------------------------------------------------------


def test_a_child_process_does_not_keep_a_dead_runner_alive(kc):
    ok(*run(kc, 'let child = std::process::Command::new("sleep").arg("600").spawn().unwrap();'))
    t0 = time.monotonic()
    reply, outputs = run(kc, "unsafe { std::ptr::null_mut::<u8>().write(1); }", timeout=60)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "RunnerDied", reply["content"]
    assert time.monotonic() - t0 < 30
    assert value(kc, "3 * 3") == "9"


# --- limits on magic arguments --------------------------------------------------------


def test_absurd_magic_arguments_are_refused_and_force_lifts_the_bound(kc):
    for code, what in [
        ("%%parallel threads 100000000\n1", "--force"),
        ("%%parallel processes 2 --scaling 1,99999999\n1", "--force"),
        ("%cluster start -n 100000", "--force"),
        ("%%parallel cluster --targets 0-4294967295\n1", "more than 65536"),
    ]:
        reply, outputs = run(kc, code, timeout=30)
        assert reply["content"]["status"] == "error", code
        assert what in kh.all_text(outputs) + kh.error_text(reply["content"]), (code, outputs)
    reply, outputs = run(kc, "%%parallel threads 300 --force\nrank", timeout=120)
    ok(reply, outputs)


# --- shutdown -------------------------------------------------------------------------


def test_shutdown_stops_the_cluster_and_removes_its_key_file(start_kernel):
    from test_cluster import gone_within, start_cluster

    km, kc = start_kernel()
    controller, path, engines = start_cluster(kc, 1)
    assert path.exists()
    kernel_pid = kh.kernel_pid(km)
    km.shutdown_kernel(now=False)  # shutdown_request on control
    assert gone_within([kernel_pid], 15)
    assert not path.exists(), f"{path} (the cluster's key) outlived the kernel"
    assert not path.parent.exists()
    assert gone_within([controller] + [p for e in engines for p in e[1:]], 15)


def send_raw(kc, msg_type: str, content: bytes) -> str:
    """Sends a correctly signed message whose content frame is exactly `content`."""
    import json

    header = kc.session.msg_header(msg_type)
    parts = [json.dumps(header, default=str).encode(), b"{}", b"{}", content]
    kc.shell_channel.socket.send_multipart([b"<IDS|MSG>", kc.session.sign(parts)] + parts)
    return header["msg_id"]


def test_a_lone_surrogate_is_replaced_and_content_that_is_not_json_gets_an_error_reply(kc):
    import json

    # Python's json writes a lone surrogate as the escape "\ud800" (ensure_ascii).
    code = json.dumps({"code": '"a\ud800b".chars().count()', "silent": False})
    msg_id = send_raw(kc, "execute_request", code.encode())
    assert "\\ud800" in code
    reply = kh.shell_reply(kc, msg_id, time.monotonic() + 60)
    assert reply["content"]["status"] == "ok", reply["content"]
    msg_id = send_raw(kc, "complete_request", b"{not json at all")
    reply = kh.shell_reply(kc, msg_id, time.monotonic() + 10)
    assert reply["msg_type"] == "complete_reply"
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "BadRequest"
    assert value(kc, "5 + 5") == "10"


def test_a_client_that_never_reads_its_replies_does_not_stop_the_others(kernel):
    from jupyter_client.session import Session

    km, kc = kernel
    info = km.get_connection_info()
    session = Session(key=info["key"], signature_scheme=info["signature_scheme"])
    with non_reader(info["shell_port"], "DEALER") as greedy:
        pid = kh.kernel_pid(km)
        for _ in range(3000):  # 3000 replies it never reads
            session.send(greedy, "kernel_info_request", {})
        time.sleep(2)
        t0 = time.monotonic()
        assert value(kc, "8 * 8", timeout=60) == "64"
        waited = time.monotonic() - t0
        assert waited < 20, f"another client waited {waited:.1f} s"
        assert kh.rss_kib(pid) < 512 * 1024


# --- files ----------------------------------------------------------------------------


def test_cache_and_history_are_private_and_an_empty_cluster_key_is_refused(start_kernel, tmp_path):
    import json
    import stat
    import subprocess

    cache, data = tmp_path / "c" / "cache", tmp_path / "d" / "data"
    # The snapshot directory of a kernel that was killed before it could remove it.
    host = Path("/proc/sys/kernel/hostname").read_text().strip().replace("-", "_").replace("/", "_")
    stale = Path(tempfile.gettempdir()) / f"ferrocell-snapshots-{host}-999999999-gone"
    stale.mkdir(exist_ok=True)
    (stale / "secret").write_text("old values")
    km, kc = start_kernel(env={"FERROCELL_CACHE": str(cache), "FERROCELL_DATA_DIR": str(data)},
                          ready_timeout=120)
    ok(*run(kc, "let secret = 42;", timeout=300))
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(cache) == 0o700 and mode(data) == 0o700, (oct(mode(cache)), oct(mode(data)))
    assert mode(data / "history.jsonl") == 0o600
    [snapshots] = Path(tempfile.gettempdir()).glob(
        f"ferrocell-snapshots-{host}-{kh.kernel_pid(km)}-*")
    assert mode(snapshots) == 0o700, oct(mode(snapshots))
    assert not stale.exists()
    bad = tmp_path / "cluster.json"
    bad.write_text(json.dumps({"ip": "127.0.0.1", "engine_port": 1, "client_port": 2,
                               "key": "", "signature_scheme": "hmac-sha256",
                               "controller_host": "localhost", "controller_pid": 1}))
    out = subprocess.run([str(kh.BINARY), "engine", "--file", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "key is empty" in out.stderr, out.stderr


def test_a_runner_that_dies_is_noticed_even_when_a_forked_child_holds_its_channel(kc):
    ok(*run(kc, textwrap.dedent("""\
        unsafe extern "C" { fn fork() -> i32; fn sleep(s: u32) -> u32; fn _exit(code: i32) -> !; }
        let forked = unsafe { fork() };
        if forked == 0 { unsafe { sleep(600); _exit(0); } }
        """)))
    t0 = time.monotonic()
    reply, _ = run(kc, "unsafe { std::ptr::null_mut::<u8>().write(1); }", timeout=60)
    assert reply["content"]["ename"] == "RunnerDied", reply["content"]
    assert time.monotonic() - t0 < 30
    assert value(kc, "4 * 4") == "16"


@pytest.mark.parametrize("port,peer,limit", [("hb_port", b"REQ", 64 << 10),
                                             ("iopub_port", b"SUB", 64 << 10),
                                             ("stdin_port", b"DEALER", 16 << 20)])
def test_sockets_that_take_small_messages_refuse_large_ones(kernel, port, peer, limit):
    km, kc = kernel
    info = km.get_connection_info()
    # One byte over the socket's own limit (far under the general 256 MiB).
    s = connect(info[port])
    s.sendall(ready(peer) + long_frame_header(limit + 1))
    assert closed_by_peer(s), f"{port}: the connection stayed open"
    # The same size on the shell socket is an ordinary message: it stays open.
    s2 = connect(info["shell_port"])
    s2.sendall(ready(b"DEALER") + long_frame_header(limit + 1))
    assert not closed_by_peer(s2, within=2)
    s2.close()
    assert value(kc, "2 + 3") == "5"
    assert kc.is_alive()


def test_a_forked_child_that_goes_on_cannot_end_the_next_cell(kc):
    # The child returns from the cell as the runner would: its end of cell (and
    # anything else it sends on the runner's channel) must not reach the kernel.
    ok(*run(kc, textwrap.dedent("""\
        unsafe extern "C" { fn fork() -> i32; }
        let forked = unsafe { fork() };
        if forked == 0 { std::thread::sleep(std::time::Duration::from_millis(1500)); }
        """)))
    reply, outputs = run(kc, 'std::thread::sleep(std::time::Duration::from_secs(4));\nprintln!("B done");\n7')
    ok(reply, outputs)
    assert "B done" in kh.all_text(outputs)
    assert any(m["content"]["data"].get("text/plain") == "7" for m in of_type(outputs, "execute_result"))
    assert value(kc, "forked > 0") == "true"
