"""`jupyter console --kernel ferrocell`, typed into by a person.

The other tests speak the protocol themselves; these drive the real terminal
client instead, inside a private tmux server: keys go in with `tmux send-keys`
and the screen is read back with `tmux capture-pane`, so what is checked is
what a person at the terminal would see. That covers the parts of the kernel
that only a terminal client exercises: is_complete (Enter runs a complete cell
and opens a continuation line for an incomplete one), history_request (the Up
arrow recalls input from an earlier session) and complete_request (Tab).

How jupyter console treats Enter: it sends the whole cell to the kernel's
is_complete. "complete" runs the cell at once, with no blank line needed;
"incomplete" inserts a new line, indented by the kernel's `indent`; "invalid"
runs the cell too (the kernel then reports the error). Without kernel support
it would fall back to "run on a blank line", which these tests would notice:
single lines would not run on one Enter.

Every console gets its own tmux server (`tmux -S <temporary socket>`), a fixed
120x40 window and its own FERROCELL_DATA_DIR (history); the FERROCELL_CACHE,
JUPYTER_PATH (kernelspec) and JUPYTER_RUNTIME_DIR come from
kernel_helpers.ensure_environment(), so the prelude built once for the run is
reused. Synchronisation is by polling the screen, never by sleeping.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import pytest

import kernel_helpers as kh

TMUX = shutil.which("tmux")
JUPYTER = Path(sys.executable).parent / "jupyter"

pytestmark = [
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)"),
    pytest.mark.skipif(
        importlib.util.find_spec("jupyter_console") is None or not JUPYTER.is_file(),
        reason="jupyter-console is not installed in this Python (pip install jupyter-console)",
    ),
]

WIDTH, HEIGHT = 120, 40
START_TIMEOUT = 90          # the console starts the kernel and waits for kernel_info
CELL_TIMEOUT = kh.FIRST_CELL_TIMEOUT  # a console's first cell compiles
KEY_TIMEOUT = 30            # the screen reacting to a key (Tab asks the kernel)
EXIT_TIMEOUT = 30           # the console shutting its kernel down

PROMPT = re.compile(r"^In \[(\d+)\]: ?(.*)$")
CONTINUATION = re.compile(r"^\s*\.\.\.: ?(.*)$")
# The console's own patience with the kernel, raised for a busy shared machine.
# Only how long it waits changes: a kernel that does not answer still fails.
CONSOLE_OPTIONS = [
    "--ZMQTerminalInteractiveShell.kernel_is_complete_timeout=10",
    "--ZMQTerminalInteractiveShell.kernel_timeout=120",
    "--ZMQCompleter.timeout=10",
]
TMUX_CONFIG = f"""\
set -g status off
set -g remain-on-exit on
set -g history-limit 10000
set -g default-size {WIDTH}x{HEIGHT}
"""

T = TypeVar("T")


def continued(line: str) -> str | None:
    """The text after a `...:` continuation prompt, or None for other lines."""
    match = CONTINUATION.match(line)
    return match.group(1) if match else None


@dataclass
class Cell:
    """One executed cell as the screen shows it."""

    number: int
    lines: list[str]   # the input lines, prompts included
    output: str        # everything printed between the input and the next prompt

    @property
    def value(self) -> str | None:
        """What follows `Out[number]: `, or None when the cell showed no value."""
        match = re.search(rf"^Out\[{self.number}\]: (.*)$", self.output, re.M)
        return match.group(1) if match else None


class Console:
    """A `jupyter console --kernel ferrocell` running in a private tmux server."""

    def __init__(self, workdir: Path, data_dir: Path):
        """Starts the console; `workdir` takes its IPython and Jupyter config dirs."""
        # A private server whose socket lives (and goes) with a short temporary
        # directory: socket paths are limited to about 100 bytes.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="fc-console-"))
        self.socket = self.socket_dir / "tmux"
        config = self.socket_dir / "tmux.conf"
        config.write_text(TMUX_CONFIG)
        ipython = workdir / "ipython"
        config_dir = workdir / "jupyter-config"
        ipython.mkdir(exist_ok=True)
        config_dir.mkdir(exist_ok=True)
        env = kh.kernel_env({
            "FERROCELL_DATA_DIR": str(data_dir),
            # No user configuration (confirm_exit, key bindings) may change the
            # behaviour under test, and nothing is written to the real home.
            "IPYTHONDIR": str(ipython),
            "JUPYTER_CONFIG_DIR": str(config_dir),
            "TMUX": None,  # in case the tests themselves run inside tmux
            "PATH": f"{JUPYTER.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        })
        try:
            self._tmux("-f", str(config), "new-session", "-d", "-s", "console",
                       "-x", str(WIDTH), "-y", str(HEIGHT),
                       str(JUPYTER), "console", "--kernel", kh.KERNEL_NAME, *CONSOLE_OPTIONS,
                       env=env)
            self.pid = int(self._tmux("display-message", "-p", "-t", "console", "#{pane_pid}"))
        except BaseException:
            self._tmux("kill-server", check=False)
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            raise

    # -- tmux ---------------------------------------------------------------

    def _tmux(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
        done = subprocess.run([TMUX, "-S", str(self.socket), *args], env=env, check=False,
                              capture_output=True, text=True, timeout=30)
        if check and done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def type(self, text: str) -> None:
        """Types `text` literally. tmux reads an argument ending in `;` as a
        command separator, so that one character is escaped."""
        if text.endswith(";"):
            text = text[:-1] + "\\;"
        self._tmux("send-keys", "-t", "console", "-l", "--", text)

    def type_seen(self, text: str) -> None:
        """Types `text` and waits until the edited line shows it, so that what
        the screen shows next is the effect of the keys pressed after it."""
        self.type(text)
        self.wait(f"{text!r} on the screen",
                  lambda lines: True if lines and lines[-1].endswith(text) else None,
                  KEY_TIMEOUT)

    def press(self, *keys: str) -> None:
        """Presses named keys: Enter, Tab, Up, C-d, ..."""
        self._tmux("send-keys", "-t", "console", *keys)

    def screen(self) -> list[str]:
        """The whole pane, scrollback included, without trailing blank lines."""
        text = self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "console", check=False)
        lines = [line.rstrip() for line in text.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def dead(self) -> bool:
        """True once the console process has exited (the pane stays, dead)."""
        return self._tmux("display-message", "-p", "-t", "console", "#{pane_dead}",
                          check=False) == "1"

    # -- reading the screen -------------------------------------------------

    def wait(self, what: str, check: Callable[[list[str]], T | None], timeout: float) -> T:
        """Polls the screen until check(lines) returns something other than None."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.screen()
            found = check(lines)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n"
                                     + "\n".join(lines))
            time.sleep(0.1)

    @staticmethod
    def prompts(lines: list[str]) -> list[int]:
        """Indexes of the lines that start with an `In [n]:` prompt."""
        return [i for i, line in enumerate(lines) if PROMPT.match(line)]

    def editing(self, lines: list[str] | None = None) -> list[str]:
        """The lines from the last `In [n]:` prompt on: the cell being edited
        (and a completion menu, if one is open)."""
        lines = self.screen() if lines is None else lines
        marks = self.prompts(lines)
        return lines[marks[-1]:] if marks else []

    def ready(self, timeout: float = KEY_TIMEOUT) -> int:
        """Waits for an empty prompt; returns how many prompts the screen has."""
        def empty_prompt(lines: list[str]) -> int | None:
            marks = self.prompts(lines)
            if marks and marks[-1] == len(lines) - 1 and PROMPT.match(lines[-1]).group(2) == "":
                return len(marks)
            return None
        return self.wait("an empty In [n]: prompt", empty_prompt, timeout)

    def result(self, prompts_before: int, timeout: float = CELL_TIMEOUT) -> Cell:
        """Waits for the cell entered at prompt number `prompts_before` (counted
        on the screen) to finish, i.e. for the next empty prompt; returns it.

        An empty continuation line instead means that the console judged the
        cell incomplete and waits for more input: that fails at once."""
        def finished(lines: list[str]) -> Cell | None:
            if lines and continued(lines[-1]) == "":
                raise AssertionError("Enter did not run the cell: the console waits for more "
                                     "input (is_complete said incomplete?); the screen:\n"
                                     + "\n".join(lines))
            marks = self.prompts(lines)
            if len(marks) <= prompts_before or PROMPT.match(lines[-1]) is None \
                    or PROMPT.match(lines[-1]).group(2) != "":
                return None
            start, end = marks[prompts_before - 1], marks[prompts_before]
            block = lines[start:end]
            count = 1
            while count < len(block) and continued(block[count]) is not None:
                count += 1
            return Cell(number=int(PROMPT.match(block[0]).group(1)),
                        lines=block[:count], output="\n".join(block[count:]).strip())
        return self.wait("the cell to finish", finished, timeout)

    def run_line(self, text: str, timeout: float = CELL_TIMEOUT) -> Cell:
        """Types one line at an empty prompt, presses Enter and waits for the result."""
        before = self.ready()
        self.type(text)
        self.press("Enter")
        return self.result(before, timeout)

    # -- the end ------------------------------------------------------------

    def kernels(self) -> list[int]:
        """Pids of the ferrocell kernels this console started."""
        found = []
        for pid in kh.descendants(self.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and Path(os.fsdecode(argv[0])).name == "ferrocell" and b"kernel" in argv:
                found.append(pid)
        return found

    def quit(self) -> None:
        """Ctrl-D, then "y" to the console's "Do you really want to exit" question."""
        self.ready()
        self.press("C-d")
        self.wait("the exit question",
                  lambda lines: True if lines and "really want to exit" in lines[-1] else None,
                  KEY_TIMEOUT)
        self.type("y")
        self.press("Enter")
        self.wait("the console to exit", lambda _: True if self.dead() else None, EXIT_TIMEOUT)

    def close_terminal(self) -> None:
        """What closing the terminal window does: the tmux server goes, and the
        console with it (SIGHUP), without shutting its kernel down."""
        self._tmux("kill-server", check=False)

    def close(self) -> None:
        """Quits politely if the console still runs, then removes the tmux server
        and anything the console left behind."""
        leftovers = [self.pid, *kh.descendants(self.pid)]
        if not self.dead():
            try:
                self.press("C-c")
                self.quit()
            except Exception:
                pass
        self._tmux("kill-server", check=False)
        kh.kill_left(leftovers, within=5)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@pytest.fixture
def console(tmp_path):
    """Factory: console(data_dir=None) starts a console showing its first prompt;
    without a data_dir each console gets a history directory of its own."""
    started: list[Console] = []

    def start(data_dir: Path | None = None) -> Console:
        if data_dir is None:
            data_dir = tmp_path / f"data-{len(started)}"
        data_dir.mkdir(exist_ok=True)
        started.append(Console(tmp_path, data_dir))
        started[-1].ready(START_TIMEOUT)
        return started[-1]

    yield start
    for each in reversed(started):
        each.close()


def prompt_text(lines: list[str]) -> str | None:
    """The text after the last `In [n]:` prompt."""
    for line in reversed(lines):
        match = PROMPT.match(line)
        if match:
            return match.group(2)
    return None


def no_error(cell: Cell) -> Cell:
    assert "error" not in cell.output.lower(), f"In [{cell.number}] failed:\n{cell.output}"
    return cell


def test_values_show_as_out_prompts(console):
    """One Enter runs a complete line; a value shows as Out[n] with the cell's number."""
    c = console()
    let = no_error(c.run_line("let x = 40 + 2;"))
    assert let.value is None, let.output  # a statement has no value to show
    product = no_error(c.run_line("x * 10"))
    assert product.number == let.number + 1
    assert product.value == "420", product.output


def test_a_multi_line_fn_stays_open_until_its_brace_closes(console):
    """is_complete keeps an open `fn` body editable and runs it once `}` closes it."""
    c = console()
    before = c.ready()
    c.type("fn add(a: i32, b: i32) -> i32 {")
    c.press("Enter")

    def cell_lines(count: int) -> Callable[[list[str]], list[str] | None]:
        """The edited cell once it has `count` lines, the last one an empty
        continuation line; fails at once if the cell was run instead."""
        def check(lines: list[str]) -> list[str] | None:
            if len(c.prompts(lines)) != before:
                raise AssertionError("the cell ran although it was incomplete:\n"
                                     + "\n".join(lines))
            cell = c.editing(lines)
            if len(cell) == count and continued(cell[-1]) == "":
                return cell
            return None
        return check

    # is_complete said "incomplete": a continuation line, indented by the
    # kernel's indent for one open brace, and nothing executed.
    c.wait("a continuation line", cell_lines(2), KEY_TIMEOUT)
    c.type_seen("a + b")
    c.press("Enter")
    cell = c.wait("a second continuation line", cell_lines(3), KEY_TIMEOUT)
    assert continued(cell[1]) == "    a + b", cell
    # With the brace closed the cell is complete: Enter runs it, no blank line needed.
    c.type_seen("}")  # Enter must not see the empty continuation line of before
    c.press("Enter")
    fn = no_error(c.result(before))
    assert [continued(line).strip() for line in fn.lines[1:]] == ["a + b", "}"], fn.lines
    assert fn.value is None, fn.output
    call = no_error(c.run_line("add(2, 3)"))
    assert call.number == fn.number + 1  # the three lines were one cell
    assert call.value == "5", call.output


def test_up_arrow_recalls_a_line_from_an_earlier_session(console, tmp_path):
    """A new console loads its Up-arrow history from the kernel (history_request,
    "tail"), which reads what the previous session wrote to FERROCELL_DATA_DIR."""
    data = tmp_path / "history"
    marker = "let history_marker = 1234;"
    first = console(data)
    no_error(first.run_line(marker))
    kernels = first.kernels()
    assert kernels, "cannot find the first console's kernel"
    first.quit()
    deadline = time.monotonic() + EXIT_TIMEOUT
    while any(kh.alive(p) for p in kernels) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(kh.alive(p) for p in kernels), "the kernel outlived the console's exit"

    second = console(data)
    before = second.ready()
    second.press("Up")
    second.wait(f"{marker!r} at the prompt",
                lambda lines: True if prompt_text(lines) == marker else None, KEY_TIMEOUT)
    second.press("Enter")
    recalled = no_error(second.result(before))
    assert recalled.number == 1 and recalled.lines == [f"In [1]: {marker}"], recalled
    check = no_error(second.run_line("history_marker + 1"))
    assert check.value == "1235", check.output


def test_tab_completes_session_names_and_std_paths(console):
    """Tab asks the kernel (complete_request): session names and std paths."""
    c = console()
    no_error(c.run_line("let my_long_variable_name = 7;"))

    before = c.ready()
    c.type("my_long_var")
    c.press("Tab")
    c.wait("the name to complete",
           lambda lines: True if prompt_text(lines) == "my_long_variable_name" else None,
           KEY_TIMEOUT)
    c.press("Enter")
    assert no_error(c.result(before)).value == "7"

    # Two std paths start with `Hash`: Tab opens a menu listing both.
    before = c.ready()
    c.type("std::collections::Hash")
    c.press("Tab")
    menu = c.wait("a menu with HashMap and HashSet",
                  lambda lines: lines if {"HashMap", "HashSet"} <= {
                      line.strip() for line in c.editing(lines)[1:]} else None,
                  KEY_TIMEOUT)
    assert prompt_text(menu) == "std::collections::Hash", menu
    # One more letter leaves one match, which Tab inserts.
    c.type("M")
    c.press("Tab")
    c.wait("HashMap to complete",
           lambda lines: True if prompt_text(lines) == "std::collections::HashMap" else None,
           KEY_TIMEOUT)
    c.type("::<u8, u8>::new().len()")
    c.press("Enter")
    assert no_error(c.result(before)).value == "0"


def test_closing_the_terminal_ends_the_kernel(console):
    """A person closes the terminal window: the console dies without shutting
    its kernel down, and the kernel must notice that its client is gone."""
    c = console()
    no_error(c.run_line("1 + 1"))
    kernel = c.kernels()
    assert kernel, "cannot find the console's kernel"
    leftovers = kernel + [p for k in kernel for p in kh.descendants(k)]
    c.close_terminal()
    left = kh.kill_left(leftovers, within=15)
    assert not left, f"still running 15 s after the terminal closed: {left}"


def test_typing_exit_leaves_the_console_and_stops_its_kernel(console):
    """As in IPython's console: `exit` alone asks the console to leave (the
    kernel's ask_exit payload), with no question, and the kernel shuts down."""
    c = console()
    no_error(c.run_line("let kept = 1;"))
    kernel = c.kernels()
    assert kernel, "cannot find the console's kernel"
    c.ready()
    c.type("exit")
    c.press("Enter")
    c.wait("the console to exit", lambda _: True if c.dead() else None, EXIT_TIMEOUT)
    deadline = time.monotonic() + EXIT_TIMEOUT
    while any(kh.alive(p) for p in kernel) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(kh.alive(p) for p in kernel), "the kernel outlived `exit`"
