"""Shared machinery for the Python test suite.

Everything here drives the real release binary through jupyter_client over
real ZeroMQ sockets: the kernel is started from the kernelspec that
`ferrocell install` writes, exactly as a notebook server would start it.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("FERROCELL_BIN", REPO / "target" / "release" / "ferrocell"))
KERNEL_NAME = "ferrocell"

# Generous: the first cell in a fresh cache builds the prelude.
FIRST_CELL_TIMEOUT = 120
CELL_TIMEOUT = 60

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

_environment: dict[str, Path] | None = None
_warm = False


def ensure_environment() -> dict[str, Path]:
    """Point the whole test run at private directories (idempotent).

    One cache (FERROCELL_CACHE) is shared by every kernel of the run so that the
    prelude is built once; history (FERROCELL_DATA_DIR), Jupyter's runtime files
    and the kernelspec live in the same temporary tree, removed at exit.
    """
    global _environment
    if _environment is not None:
        return _environment
    if not BINARY.is_file():
        raise RuntimeError(
            f"{BINARY} does not exist: build it first (cargo build --release, or scripts/setup)"
        )
    root = Path(tempfile.mkdtemp(prefix="ferrocell-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    paths = {
        "root": root,
        "cache": root / "cache",
        "data": root / "data",
        "prefix": root / "prefix",
        "runtime": root / "runtime",
    }
    for key in ("cache", "data", "runtime"):
        paths[key].mkdir()
    subprocess.run(
        [str(BINARY), "install", "--prefix", str(paths["prefix"])],
        check=True,
        capture_output=True,
        text=True,
    )
    spec_dir = paths["prefix"] / "share" / "jupyter" / "kernels" / KERNEL_NAME
    if not (spec_dir / "kernel.json").is_file():
        raise RuntimeError(f"ferrocell install did not write {spec_dir / 'kernel.json'}")
    jupyter_path = str(paths["prefix"] / "share" / "jupyter")
    if os.environ.get("JUPYTER_PATH"):
        jupyter_path += os.pathsep + os.environ["JUPYTER_PATH"]
    os.environ["JUPYTER_PATH"] = jupyter_path
    os.environ["JUPYTER_RUNTIME_DIR"] = str(paths["runtime"])
    os.environ["FERROCELL_CACHE"] = str(paths["cache"])
    os.environ["FERROCELL_DATA_DIR"] = str(paths["data"])
    os.environ.pop("FERROCELL_RUSTC", None)
    _environment = paths
    return paths


def warm_cache() -> None:
    """Run cells in a throwaway kernel so that the prelude and the serde build for
    snapshots are in the cache (idempotent). `:dep` alone waits for the serde build."""
    global _warm
    if _warm:
        return
    ensure_environment()
    km, kc = start_kernel()
    try:
        for code in (":dep", "1 + 1"):
            reply, outputs = run(kc, code, timeout=FIRST_CELL_TIMEOUT)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"warming the cache failed: {reply['content']} {outputs}")
    finally:
        stop_kernel(km, kc)
    _warm = True


def kernel_env(overrides: dict[str, str | None] | None = None) -> dict[str, str]:
    """The environment for a new kernel: ours, with overrides (None removes a variable)."""
    env = dict(os.environ)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def start_kernel(
    env: dict[str, str | None] | None = None, ready_timeout: float = 60, **launch: Any
) -> tuple[KernelManager, Any]:
    """Start a ferrocell kernel and a blocking client that is ready to talk to it.

    `launch` goes to the process launch (e.g. stderr=file to capture the kernel's log)."""
    ensure_environment()
    km = KernelManager(kernel_name=KERNEL_NAME)
    km.start_kernel(env=kernel_env(env), **launch)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=ready_timeout)
    except BaseException:
        stop_kernel(km, kc)
        raise
    return km, kc


def kernel_pid(km: KernelManager) -> int | None:
    process = getattr(km.provisioner, "process", None)
    return getattr(process, "pid", None)


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may itself contain spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren, ...)."""
    parents = _parents()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.append(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def rss_kib(pid: int) -> int:
    """Resident memory of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def stop_kernel(km: KernelManager, kc: Any) -> None:
    """Shut the kernel down the polite way, then make sure nothing it started lingers."""
    pid = kernel_pid(km)
    children = descendants(pid) if pid else []
    try:
        kc.stop_channels()
    except Exception:
        pass
    try:
        if km.has_kernel:
            km.shutdown_kernel(now=False)
    except Exception:
        try:
            km.shutdown_kernel(now=True)
        except Exception:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(c) for c in children):
        time.sleep(0.05)
    for child in children:
        if alive(child):
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
    try:
        km.cleanup_resources()
    except Exception:
        pass


# ---------------------------------------------------------------------------
# Messages


def _stash(kc: Any, name: str) -> dict[str, list[dict]]:
    return kc.__dict__.setdefault(f"_ferrocell_{name}", {})


def _parent_id(msg: dict) -> str | None:
    return (msg.get("parent_header") or {}).get("msg_id")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out waiting for the kernel")
    return left


def next_iopub(kc: Any, msg_id: str, deadline: float) -> dict:
    """The next IOPub message whose parent is `msg_id` (others are kept for later)."""
    stash = _stash(kc, "iopub")
    if stash.get(msg_id):
        return stash[msg_id].pop(0)
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=_remaining(deadline))
        except Empty:
            raise TimeoutError(f"no IOPub message for {msg_id}") from None
        msg["_received"] = time.monotonic()
        parent = _parent_id(msg)
        if parent == msg_id:
            return msg
        if parent:
            stash.setdefault(parent, []).append(msg)


def wait_for_output(kc: Any, msg_id: str, timeout: float = CELL_TIMEOUT) -> None:
    """Waits until the running request `msg_id` has printed something (it has started)."""
    deadline = time.monotonic() + timeout
    while next_iopub(kc, msg_id, deadline)["msg_type"] != "stream":
        pass


def collect_iopub(kc: Any, msg_id: str, deadline: float) -> list[dict]:
    """All IOPub messages of one request, from busy up to and including idle."""
    msgs = []
    while True:
        msg = next_iopub(kc, msg_id, deadline)
        msgs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return msgs


def shell_reply(kc: Any, msg_id: str, deadline: float, channel: str = "shell") -> dict:
    """The reply to `msg_id` on shell (or control); other replies are kept for later."""
    stash = _stash(kc, channel)
    if stash.get(msg_id):
        return stash[msg_id].pop(0)
    get = kc.get_shell_msg if channel == "shell" else kc.get_control_msg
    while True:
        try:
            msg = get(timeout=_remaining(deadline))
        except Empty:
            raise TimeoutError(f"no {channel} reply to {msg_id}") from None
        msg["_received"] = time.monotonic()
        parent = _parent_id(msg)
        if parent == msg_id:
            return msg
        if parent:
            stash.setdefault(parent, []).append(msg)


def wait(kc: Any, msg_id: str, timeout: float = CELL_TIMEOUT) -> tuple[dict, list[dict]]:
    """Reply and outputs (IOPub messages other than status and execute_input) of a request."""
    deadline = time.monotonic() + timeout
    msgs = collect_iopub(kc, msg_id, deadline)
    reply = shell_reply(kc, msg_id, deadline)
    outputs = [m for m in msgs if m["msg_type"] not in ("status", "execute_input")]
    return reply, outputs


def run(kc: Any, code: str, timeout: float = CELL_TIMEOUT, **kw: Any) -> tuple[dict, list[dict]]:
    """Execute `code`; return (execute_reply, outputs) once the kernel is idle again."""
    msg_id = kc.execute(code, **kw)
    return wait(kc, msg_id, timeout)


def run_all(
    kc: Any, code: str, timeout: float = CELL_TIMEOUT, **kw: Any
) -> tuple[dict, list[dict]]:
    """Like run, but the IOPub list has every message, status and execute_input included."""
    msg_id = kc.execute(code, **kw)
    deadline = time.monotonic() + timeout
    msgs = collect_iopub(kc, msg_id, deadline)
    return shell_reply(kc, msg_id, deadline), msgs


def request(kc: Any, msg_type: str, content: dict | None = None, channel: str = "shell",
            timeout: float = 10) -> dict:
    """Send any request on shell or control and return its reply."""
    msg = kc.session.msg(msg_type, content or {})
    getattr(kc, f"{channel}_channel").send(msg)
    return shell_reply(kc, msg["header"]["msg_id"], time.monotonic() + timeout, channel)


def ok(reply: dict, outputs: list[dict] | None = None) -> dict:
    """Assert that a reply is ok, showing the error if it is not; return its content."""
    content = reply["content"]
    if content["status"] != "ok":
        detail = content
        for msg in outputs or []:
            if msg["msg_type"] == "error":
                detail = error_text(msg)
        raise AssertionError(f"expected status ok, got {content['status']}: {detail}")
    return content


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def error_text(msg_or_content: dict) -> str:
    """ename, evalue and traceback of an error message (or reply content) as plain text."""
    content = msg_or_content.get("content", msg_or_content)
    parts = [content.get("ename", ""), content.get("evalue", "")]
    parts.extend(content.get("traceback", []))
    return strip_ansi("\n".join(parts))


def of_type(outputs: list[dict], msg_type: str) -> list[dict]:
    return [m for m in outputs if m["msg_type"] == msg_type]


def streams(outputs: list[dict]) -> list[tuple[str, str]]:
    """(name, text) of the stream messages, adjacent chunks of one stream merged."""
    merged: list[tuple[str, str]] = []
    for msg in of_type(outputs, "stream"):
        name, text = msg["content"]["name"], msg["content"]["text"]
        if merged and merged[-1][0] == name:
            merged[-1] = (name, merged[-1][1] + text)
        else:
            merged.append((name, text))
    return merged


def stream_text(outputs: list[dict], name: str = "stdout") -> str:
    return "".join(m["content"]["text"] for m in of_type(outputs, "stream")
                   if m["content"]["name"] == name)


def all_text(outputs: list[dict]) -> str:
    """Everything a person would read: streams and the text/plain of displays and results."""
    parts = []
    for msg in outputs:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            parts.append(content["text"])
        elif msg["msg_type"] in ("display_data", "execute_result", "update_display_data"):
            parts.append(content["data"].get("text/plain", ""))
    return "".join(parts)


def result_text(outputs: list[dict]) -> str | None:
    """text/plain of the execute_result, or None when the cell had no value."""
    results = of_type(outputs, "execute_result")
    assert len(results) <= 1, results
    return results[0]["content"]["data"]["text/plain"] if results else None


def value(kc: Any, code: str, timeout: float = CELL_TIMEOUT) -> str | None:
    """Run a cell that must succeed and return its value's text/plain."""
    reply, outputs = run(kc, code, timeout=timeout)
    ok(reply, outputs)
    return result_text(outputs)


def progress_texts(outputs: list[dict]) -> list[str]:
    """The texts an in-place progress display showed, in order: its display_data,
    then each update_display_data (one display id: one line that changes)."""
    shown = [m for m in outputs if m["msg_type"] in ("display_data", "update_display_data")
             and m["content"].get("transient", {}).get("display_id")
             and "text/html" not in m["content"]["data"]]
    ids = {m["content"]["transient"]["display_id"] for m in shown}
    assert len(ids) <= 1, f"more than one progress display: {ids}"
    if shown:
        assert shown[0]["msg_type"] == "display_data", shown[0]
        assert all(m["msg_type"] == "update_display_data" for m in shown[1:])
    return [m["content"]["data"]["text/plain"] for m in shown]


def kill_left(pids: list[int], within: float = 0.0) -> list[int]:
    """Waits up to `within` seconds for `pids` to exit, then kills (SIGKILL) those
    still running; returns them, so a test can say which outlived their time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


def slow_each(backend: str, items: int, out: str = "", value: str = "item") -> str:
    """A `--each` cell whose items take 50 ms each and whose first item prints
    "started": long enough to interrupt, or to kill a worker, while it runs."""
    flags = f" --out {out}" if out else ""
    return (f"%%parallel {backend} --each 0..{items}u64{flags}\n"
            'if item == 0 { println!("started"); }\n'
            "std::thread::sleep(std::time::Duration::from_millis(50));\n"
            f"{value}\n")


def tables(outputs):
    """The result tables of a parallel cell (display_data or its in-place update)."""
    return [m["content"]["data"] for m in outputs
            if m["msg_type"] in ("display_data", "update_display_data")
            and "text/html" in m["content"]["data"]]
