"""Machinery for the browser test (test_browser.py): a private Jupyter server, and a
reader of the kernel messages that the page receives.

The browser test drives ferrocell the way a person does, through JupyterLab and
Notebook 7 in headless Chromium. What it needs around that lives here: a real
`jupyter lab` server on a free loopback port with its own token and its own Jupyter
directories (so nothing on the machine, no user setting and no news feed, changes
what the page shows), and a decoder of the kernel websocket's binary frames, so that
a failing step can say which messages the kernel sent.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import kernel_helpers as kh

VENV_BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")

# Settings a person would pick once and forget: no news or update toasts over the
# page, every cell rendered (no virtual scrolling that detaches cells out of view),
# and no bracket the editor adds by itself while the test types.
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
    "@jupyterlab/notebook-extension/tracker": {
        "windowingMode": "none",
        "codeCellConfig": {"autoClosingBrackets": False},
    },
    "@jupyterlab/codemirror-extension/plugin": {
        "defaultConfig": {"autoClosingBrackets": False},
    },
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(path: Path, cells: int = 1) -> None:
    """A short notebook for the ferrocell kernel: a title and `cells` empty code cells."""
    code = {"cell_type": "code", "execution_count": None, "metadata": {},
            "outputs": [], "source": ""}
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            # No language_info: the editor's language must come from the kernel's.
            "kernelspec": {"name": "ferrocell", "display_name": "Rust (ferrocell)",
                           "language": "rust"},
        },
        "cells": [{"cell_type": "markdown", "metadata": {},
                   "source": "# ferrocell in the browser"}]
        + [dict(code, id=f"code-{i}") for i in range(cells)],
    }
    notebook["cells"][0]["id"] = "title"
    path.write_text(json.dumps(notebook, indent=1))


class JupyterServer:
    """`jupyter lab` on 127.0.0.1 with a random token and private Jupyter directories.

    The kernelspecs come from JUPYTER_PATH as the test run set it (kernel_helpers),
    so the server starts the ferrocell binary under test. Notebook 7's pages (/tree,
    /notebooks/...) are served by the same server when the `notebook` package is
    installed."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "server.log"
        self.process: subprocess.Popen | None = None

    def _configure(self) -> dict[str, str]:
        dirs = {name: self.home / name for name in ("config", "data", "runtime")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        settings = dirs["config"] / "lab" / "user-settings"
        for plugin, values in USER_SETTINGS.items():
            file = settings / f"{plugin}.jupyterlab-settings"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(values))
        # No "build recommended" dialog, no announcements feed, no update check.
        (dirs["config"] / "labconfig").mkdir(exist_ok=True)
        (dirs["config"] / "labconfig" / "page_config.json").write_text(
            json.dumps({"buildCheck": False, "buildAvailable": False}))
        (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps({
            "LabApp": {
                "news_url": None,
                "check_for_updates_class":
                    "jupyterlab.handlers.announcements.NeverCheckForUpdate",
            },
        }))
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            JUPYTER_PLATFORM_DIRS="1",
        )
        env.pop("JUPYTER_PREFER_ENV_PATH", None)
        return env

    def start(self, timeout: float = 60) -> None:
        env = self._configure()
        command = [
            str(VENV_BIN / "jupyter"), "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.extension_manager=readonly",  # no look-ups of extensions online
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            command, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n"
                                   + self.log_text())
            try:
                self.api("status")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("jupyter lab did not answer:\n" + self.log_text())
                time.sleep(0.2)

    def api(self, path: str) -> Any:
        """GET /api/<path> with the token; the decoded JSON."""
        request = urllib.request.Request(f"{self.url}/api/{path}",
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def page(self, path: str) -> str:
        """The address of one of the server's pages, with the token to log in."""
        return f"{self.url}/{path.lstrip('/')}?token={self.token}"

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        """Stop the server (SIGTERM: it shuts its kernels down), then anything left
        in its process group."""
        if self.process is None:
            return
        # Kernels run in sessions of their own: note them to kill any left behind.
        below = kh.descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.terminate()  # the server's clean stop: kernels shut down first
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except OSError:
            pass
        kh.kill_left(below)
        self.process.wait()
        self.log.close()
        self.process = None


# ---------------------------------------------------------------------------
# Kernel messages as the page receives them


def decode_frame(payload: bytes | str) -> dict | None:
    """One kernel websocket frame: the JSON protocol, or JupyterLab 4's binary one
    (v1.kernel.websocket.jupyter.org: a count of offsets, the offsets, then channel,
    header, parent header, metadata, content and buffers). None if it is neither."""
    if isinstance(payload, str):
        try:
            msg = json.loads(payload)
        except ValueError:
            return None
        return msg if isinstance(msg, dict) and "header" in msg else None
    try:
        (count,) = struct.unpack_from("<Q", payload, 0)
        offsets = struct.unpack_from(f"<{count}Q", payload, 8)
        parts = [payload[offsets[i]:offsets[i + 1]] for i in range(count - 1)]
        channel = parts[0].decode()
        header, parent, metadata, content = (json.loads(p) for p in parts[1:5])
    except (struct.error, ValueError, IndexError, UnicodeDecodeError):
        return None
    return {"channel": channel, "header": header, "parent_header": parent,
            "metadata": metadata, "content": content}


class KernelLog:
    """Every kernel message the page receives on its kernel websockets, in order."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def attach(self, page: Any) -> None:
        def on_websocket(ws: Any) -> None:
            if "/api/kernels/" in ws.url:
                ws.on("framereceived", self._received)
        page.on("websocket", on_websocket)

    def _received(self, payload: bytes | str) -> None:
        msg = decode_frame(payload)
        if msg is not None:
            self.messages.append(msg)

    def of_type(self, msg_type: str) -> list[dict]:
        return [m for m in self.messages if m["header"].get("msg_type") == msg_type]

    def tail(self, n: int = 15) -> str:
        """The last messages, one a line, for an assertion's message."""
        lines = []
        for m in self.messages[-n:]:
            content = json.dumps(m["content"])
            lines.append(f"{m.get('channel')} {m['header'].get('msg_type')}: {content[:300]}")
        return "\n".join(lines)
