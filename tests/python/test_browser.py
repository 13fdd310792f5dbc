"""ferrocell as a person meets it: JupyterLab 4 and Notebook 7 in a real browser.

The other tests talk to the kernel through jupyter_client; this one checks what
the page shows. It starts a private `jupyter lab` server, opens one notebook in
headless Chromium, types Rust cells with the keyboard, runs them with Shift+Enter
and reads the output area's DOM: a value, output that streams while the cell is
still busy, HTML, `%%parallel` tables, the progress display replaced by the result,
the `--scaling` chart, interrupt and restart from the toolbar and the menu, Rust
syntax highlighting, and one cell in Notebook 7's interface. Each step leaves a
screenshot in target/browser-screenshots/ (overwritten every run).

Needs the Python packages jupyterlab, notebook and playwright, and Debian's
chromium at /usr/bin/chromium (Playwright's own browser download is not used);
the module is skipped when playwright or chromium is missing.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

import browser_helpers as bh
import kernel_helpers as kh

try:
    from playwright.sync_api import Locator, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("the playwright Python package is not installed", allow_module_level=True)
if not bh.CHROMIUM.is_file():
    pytest.skip(f"{bh.CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

SCREENSHOTS = kh.REPO / "target" / "browser-screenshots"
DISPLAY_NAME = "Rust (ferrocell)"
# Milliseconds: a cell compiles with rustc before it runs, on a busy machine.
CELL_MS = 120_000
UI_MS = 60_000

FINISHED_PROMPT = re.compile(r"^\[\d+\]:$")


class StepFailure(AssertionError):
    """A failed step, with what the page and the kernel showed at that moment."""


class Session:
    """The server, the browser page on the notebook, and what the page received."""

    def __init__(self, server: bh.JupyterServer, page: Page, log: bh.KernelLog) -> None:
        self.server = server
        self.page = page
        self.log = log

    def shot(self, name: str, page: Page | None = None) -> None:
        (page or self.page).screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    def indicator(self, page: Page | None = None) -> Locator:
        """The notebook toolbar's kernel status (data-status: idle, busy, ...)."""
        return (page or self.page).locator(".jp-Notebook-ExecutionIndicator").first

    @contextmanager
    def about(self, cell: Locator | None) -> Iterator[None]:
        """Adds the cell's output area HTML and the last kernel messages to a failure."""
        try:
            yield
        except StepFailure:
            raise
        except Exception as e:
            html = ""
            if cell is not None:
                try:
                    html = cell.locator(".jp-OutputArea").evaluate("e => e.outerHTML")
                except Exception as inner:  # the page itself may be gone
                    html = f"(no output area: {inner})"
            raise StepFailure(
                f"{e}\n--- output area ---\n{html[:4000]}\n"
                f"--- last kernel messages ---\n{self.log.tail()}\n"
                f"--- screenshots in {SCREENSHOTS}; server log {self.server.log_path}"
            ) from e


def _strip(text: str) -> str:
    return re.sub(r"\s+", "", text)


def fresh_cell(page: Page) -> Locator:
    """The notebook's last code cell, empty (a new one below it if it has code),
    located by its index so that the locator stays on it when cells are added."""
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    expect(cells.first).to_be_visible(timeout=UI_MS)
    count = cells.count()
    last = cells.nth(count - 1)
    if _strip(last.locator(".cm-content").inner_text()):
        last.locator(".jp-InputPrompt").click()  # select it (command mode)
        page.keyboard.press("Escape")
        page.keyboard.press("b")  # insert a cell below
        expect(cells).to_have_count(count + 1)
        last = cells.nth(count)
    return last


def type_cell(page: Page, code: str) -> Locator:
    """Clicks into a fresh cell and types `code` line by line, as a person does
    (the editor indents new lines itself, so lines are typed without indentation)."""
    cell = fresh_cell(page)
    cell.locator(".cm-content").click()
    lines = [line.strip() for line in code.strip().splitlines()]
    page.keyboard.type("\n".join(lines))
    # What the editor holds is what was typed: no bracket added, nothing lost.
    typed = cell.locator(".cm-content").inner_text()
    assert _strip(typed) == _strip(code), f"the editor holds {typed!r}"
    return cell


def run_cell(session: Session, code: str, page: Page | None = None) -> Locator:
    """Types `code` into a fresh cell and runs it with Shift+Enter; returns the cell."""
    page = page or session.page
    cell = type_cell(page, code)
    page.keyboard.press("Shift+Enter")
    return cell


def wait_done(session: Session, cell: Locator, page: Page | None = None) -> None:
    """Until the cell has its execution count and the kernel is idle."""
    with session.about(cell):
        expect(cell.locator(".jp-InputPrompt")).to_have_text(FINISHED_PROMPT, timeout=CELL_MS)
        expect(session.indicator(page)).to_have_attribute("data-status", "idle",
                                                           timeout=UI_MS)


def outputs(cell: Locator, mime: str | None = None) -> Locator:
    selector = ".jp-OutputArea-output"
    if mime:
        selector += f'[data-mime-type="{mime}"]'
    return cell.locator(selector)


def result_text(cell: Locator) -> str:
    """The text of the cell's result (its execute_result)."""
    return cell.locator(".jp-OutputArea-executeResult .jp-OutputArea-output").inner_text().strip()


def no_errors(session: Session, cell: Locator) -> None:
    with session.about(cell):
        expect(outputs(cell, "application/vnd.jupyter.stderr")).to_have_count(0)


# ---------------------------------------------------------------------------
# The server and the page


@pytest.fixture(scope="module")
def lab(ferrocell_environment, request) -> Iterator[Session]:
    """A private `jupyter lab`, and headless Chromium on its launcher."""
    expect.set_options(timeout=UI_MS)
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\nbrowser screenshots: {SCREENSHOTS}")
    home = Path(tempfile.mkdtemp(prefix="ferrocell-browser-"))
    root = home / "notebooks"
    root.mkdir()
    bh.write_notebook(root / "browser.ipynb")
    bh.write_notebook(root / "notebook7.ipynb")
    server = bh.JupyterServer(root, home / "jupyter")
    try:
        server.start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(bh.CHROMIUM), headless=True)
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.set_default_timeout(UI_MS)
                log = bh.KernelLog()
                log.attach(page)
                page.goto(server.page("lab"))
                yield Session(server, page, log)
            finally:
                browser.close()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def notebook(lab: Session) -> Session:
    """The test notebook opened from the file browser, its ferrocell kernel idle."""
    page = lab.page
    page.locator(".jp-DirListing-item", has_text="browser.ipynb").dblclick()
    panel = page.locator(".jp-NotebookPanel:visible")
    expect(panel.locator(".jp-CodeCell").first).to_be_visible()
    wait_kernel_ready(lab, page)
    return lab


def wait_kernel_ready(session: Session, page: Page) -> None:
    """Until the toolbar names the ferrocell kernel and shows it idle. (Before the
    kernel starts it reads "No Kernel" and idle; then initializing, then idle.)"""
    expect(page.locator("[data-jp-item-name=kernelName]").first).to_contain_text(DISPLAY_NAME)
    expect(session.indicator(page)).to_have_attribute("data-status", "idle")


# ---------------------------------------------------------------------------
# Steps, in order, on one page


def test_server_sees_the_ferrocell_kernelspec(lab: Session) -> None:
    specs = lab.server.api("kernelspecs")["kernelspecs"]
    assert "ferrocell" in specs, list(specs)
    spec = specs["ferrocell"]
    assert Path(spec["spec"]["argv"][0]).resolve() == kh.BINARY.resolve(), spec
    assert spec["spec"]["display_name"] == DISPLAY_NAME
    assert spec["resources"].get("logo-svg") or spec["resources"].get("logo-64x64"), spec


def test_01_launcher_shows_the_kernel_and_its_logo(lab: Session) -> None:
    page = lab.page
    card = page.locator('.jp-LauncherCard[data-category="Notebook"]', has_text=DISPLAY_NAME)
    expect(card).to_be_visible(timeout=UI_MS)
    resources = lab.server.api("kernelspecs")["kernelspecs"]["ferrocell"]["resources"]
    logo = card.locator("img.jp-Launcher-kernelIcon")
    expect(logo).to_have_attribute("src", resources.get("logo-svg") or resources["logo-64x64"])
    # The image loaded: the server served the logo and the browser decoded it.
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=logo.element_handle())
    lab.shot("01-launcher")


def test_02_a_rust_value(notebook: Session) -> None:
    cell = run_cell(notebook, "let v: Vec<i32> = (1..=5).collect(); v.iter().sum::<i32>()")
    wait_done(notebook, cell)
    with notebook.about(cell):
        assert result_text(cell) == "15"
    no_errors(notebook, cell)
    notebook.shot("02-value")


def test_02b_language_info_and_rust_highlighting(notebook: Session) -> None:
    infos = notebook.log.of_type("kernel_info_reply")
    assert infos, "the page received no kernel_info_reply"
    info = infos[-1]["content"]["language_info"]
    assert info["name"] == "rust"
    assert info["codemirror_mode"] == "rust" and info["pygments_lexer"] == "rust", info
    page = notebook.page
    cell = type_cell(page, "fn twice(x: i32) -> i32 { x * 2 }")
    content = cell.locator(".cm-content")
    expect(content).to_have_attribute("data-language", "rust")
    # CodeMirror 6 marks tokens with generated classes; JupyterLab's highlight style
    # gives the keyword class the keyword colour variable. Find the rule behind the
    # class of the span that holds `fn`, and compare with an identifier's.
    styles = page.evaluate(
        """(content) => {
            const rulesOf = (span) => {
                const found = [];
                for (const sheet of document.styleSheets) {
                    let rules;
                    try { rules = sheet.cssRules; } catch (e) { continue; }
                    for (const rule of rules) {
                        if (!rule.selectorText) continue;
                        for (const cls of span.classList) {
                            if (rule.selectorText.split(/[\\s,]+/).includes('.' + cls))
                                found.push(rule.cssText);
                        }
                    }
                }
                return found.join(' ');
            };
            const span = (text) => [...content.querySelectorAll('span')]
                .find(s => s.textContent === text);
            const fn = span('fn'), name = span('twice');
            return {fn: fn ? fn.className : null, fnRules: fn ? rulesOf(fn) : '',
                    name: name ? name.className : null, nameRules: name ? rulesOf(name) : ''};
        }""",
        content.element_handle(),
    )
    assert styles["fn"], f"`fn` is not a token of its own: {content.inner_html()}"
    assert "--jp-mirror-editor-keyword-color" in styles["fnRules"], styles
    assert "--jp-mirror-editor-keyword-color" not in styles["nameRules"], styles
    notebook.shot("02b-highlighting")
    # Run it too: an item definition is a cell like any other.
    page.keyboard.press("Shift+Enter")
    wait_done(notebook, cell)
    no_errors(notebook, cell)


def test_03_output_streams_while_the_cell_is_busy(notebook: Session) -> None:
    page = notebook.page
    cell = run_cell(notebook, """
        use std::io::Write;
        for i in 0..10 {
            println!("tick {i}");
            std::io::stdout().flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    """)
    with notebook.about(cell):
        # One look at the page, taken the moment the first line is there.
        seen = page.wait_for_function(
            """(cell) => {
                const out = cell.querySelector('.jp-OutputArea');
                if (!out || !out.innerText.includes('tick 0')) return null;
                return {prompt: cell.querySelector('.jp-InputPrompt').innerText.trim(),
                        status: document.querySelector('.jp-Notebook-ExecutionIndicator')
                                    .dataset.status,
                        text: out.innerText};
            }""",
            arg=cell.element_handle(), timeout=CELL_MS,
        ).json_value()
        notebook.shot("03-streaming")
        assert seen["prompt"] == "[*]:", seen
        assert seen["status"] == "busy", seen
        assert "tick 9" not in seen["text"], seen
    wait_done(notebook, cell)
    with notebook.about(cell):
        text = outputs(cell, "application/vnd.jupyter.stdout").inner_text()
        assert text.split() == " ".join(f"tick {i}" for i in range(10)).split(), text


def test_04_html_display(notebook: Session) -> None:
    cell = run_cell(notebook, 'display_html("<b id=\\"fc-html\\">bold</b>");')
    wait_done(notebook, cell)
    with notebook.about(cell):
        bold = outputs(cell, "text/html").locator("b#fc-html")
        expect(bold).to_have_text("bold")
        assert bold.evaluate("b => getComputedStyle(b).fontWeight") in ("700", "bold")
    no_errors(notebook, cell)
    notebook.shot("04-html")


def table_rows(table: Locator) -> list[list[str]]:
    return table.evaluate(
        "t => [...t.querySelectorAll('tbody tr')].map(r =>"
        " [...r.querySelectorAll('td')].map(d => d.innerText.trim()))")


def test_05_parallel_threads_table(notebook: Session) -> None:
    cell = run_cell(notebook, "%%parallel threads 2\nrank * 10")
    wait_done(notebook, cell)
    with notebook.about(cell):
        table = outputs(cell, "text/html").locator("table")
        expect(table).to_have_count(1)
        headers = table.locator("th").all_inner_texts()
        assert headers[:2] == ["rank", "value"], headers
        rows = table_rows(table)
        assert [r[:2] for r in rows] == [["0", "0"], ["1", "10"]], rows
    no_errors(notebook, cell)
    notebook.shot("05-parallel-table")


PROGRESS = """(cell) => {
    const out = cell.querySelector('.jp-OutputArea');
    const m = out && out.innerText.match(/\\d+\\/60 items done[^\\n]*/);
    return m ? m[0] : null;
}"""


def test_06_progress_updates_in_place_then_the_table(notebook: Session) -> None:
    page = notebook.page
    cell = run_cell(notebook, """
        %%parallel threads 2 --each (0..60)
        std::thread::sleep(std::time::Duration::from_millis(100));
        item * 2
    """)
    handle = cell.element_handle()
    with notebook.about(cell):
        first = page.wait_for_function(PROGRESS, arg=handle, timeout=CELL_MS).json_value()
        notebook.shot("06a-progress")
        later = page.wait_for_function(
            f"([cell, first]) => {{ const now = ({PROGRESS})(cell);"
            " return now && now !== first ? now : null; }",
            arg=[handle, first], timeout=UI_MS,
        ).json_value()
        assert first != later
        done = [int(re.match(r"\d+", t).group()) for t in (first, later)]
        assert 0 <= done[0] <= done[1] <= 60, (first, later)
    wait_done(notebook, cell)
    with notebook.about(cell):
        # The progress display became the table: one output, no progress text left.
        expect(cell.locator(".jp-OutputArea-child")).to_have_count(1)
        assert "items done" not in cell.locator(".jp-OutputArea").inner_text()
        table = outputs(cell, "text/html").locator("table")
        expect(table).to_have_count(1)
        rows = table_rows(table)
        shown = {r[0]: r[1] for r in rows if len(r) > 1}
        assert shown["0"] == "0" and shown["1"] == "2" and shown["59"] == "118", rows
        expect(outputs(cell, "text/html")).to_contain_text("60 items on 2 threads")
    no_errors(notebook, cell)
    notebook.shot("06b-progress-replaced")


def test_06b_a_background_run_updates_its_cell_after_it_went_idle(notebook: Session) -> None:
    """JupyterLab applies the display updates a `--noblock` run sends under the cell
    that started it, while the notebook runs other cells and after that cell is done."""
    started = run_cell(notebook, """
        %%parallel processes 2 --noblock --out late
        std::thread::sleep(std::time::Duration::from_millis(4000));
        rank
    """)
    wait_done(notebook, started)
    with notebook.about(started):
        expect(outputs(started, "text/html")).to_contain_text("background run `late`")
        expect(outputs(started, "text/html")).to_contain_text("running")
    other = run_cell(notebook, "6 * 7")
    wait_done(notebook, other)
    with notebook.about(other):
        assert result_text(other) == "42"
    with notebook.about(started):
        # Without %wait: the first cell's display turns to the run's end and table.
        expect(outputs(started, "text/html")).to_contain_text("done in", timeout=CELL_MS)
        expect(outputs(started, "text/html")).to_contain_text("2 ranks on 2 processes")
        expect(started.locator(".jp-OutputArea-child")).to_have_count(1)
    notebook.shot("06c-background-done")
    waited = run_cell(notebook, "%wait late\nlate.len()")
    wait_done(notebook, waited)
    with notebook.about(waited):
        assert result_text(waited) == "2"


def test_07_scaling_chart(notebook: Session) -> None:
    # Fixed work (8 items), handed to 1 and then 2 threads: a real speed-up to chart.
    cell = run_cell(notebook, """
        %%parallel threads 2 --each (0..8) --scaling 1,2
        std::thread::sleep(std::time::Duration::from_millis(50));
        item
    """)
    wait_done(notebook, cell)
    with notebook.about(cell):
        chart = outputs(cell, "image/svg+xml").locator("img, svg").first
        expect(chart).to_be_visible()
        drawn = chart.evaluate(
            """e => e.tagName === 'IMG'
                ? {tag: 'img', width: e.naturalWidth, loaded: e.complete,
                   svg: e.src.startsWith('data:image/svg+xml')
                        ? decodeURIComponent(e.src.slice(e.src.indexOf(',') + 1)) : ''}
                : {tag: 'svg', width: e.getBoundingClientRect().width, loaded: true,
                   svg: e.outerHTML}""")
        assert drawn["loaded"] and drawn["width"] > 0, drawn
        # One measured point per thread count.
        assert drawn["svg"].count("<circle") == 2, drawn
        expect(outputs(cell, "text/html").locator("table")).to_have_count(1)
        expect(outputs(cell, "text/html")).to_contain_text("8 items on 2 threads")
    no_errors(notebook, cell)
    notebook.shot("07-scaling-chart")


def test_08_interrupt_from_the_toolbar(notebook: Session) -> None:
    page = notebook.page
    cell = run_cell(notebook, 'println!("spinning");\nloop {}')
    with notebook.about(cell):
        # Running, not compiling: the line before the loop is on the page.
        expect(outputs(cell, "application/vnd.jupyter.stdout")).to_contain_text(
            "spinning", timeout=CELL_MS)
        expect(cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
        page.locator('.jp-NotebookPanel:visible [data-jp-item-name="interrupt"] jp-button'
                     ).click()
    wait_done(notebook, cell)
    with notebook.about(cell):
        error = outputs(cell, "application/vnd.jupyter.stderr")
        expect(error).to_contain_text("KeyboardInterrupt")
    notebook.shot("08-interrupted")
    after = run_cell(notebook, "1 + 2")
    wait_done(notebook, after)
    with notebook.about(after):
        assert result_text(after) == "3"


def test_09_restart_from_the_menu(notebook: Session) -> None:
    page = notebook.page
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").click()
    page.locator('.lm-Menu-item[data-command="kernelmenu:restart"]').click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Restart")
    notebook.shot("09a-restart-dialog")
    dialog.locator("button.jp-mod-accept").click()
    expect(dialog).to_have_count(0)
    expect(notebook.indicator()).to_have_attribute("data-status", "idle", timeout=UI_MS)
    cell = run_cell(notebook, 'format!("{}-{}", "after", "restart")')
    wait_done(notebook, cell)
    with notebook.about(cell):
        # A new kernel counts from 1 again.
        expect(cell.locator(".jp-InputPrompt")).to_have_text("[1]:")
        assert result_text(cell) == '"after-restart"'
    notebook.shot("09b-after-restart")


def test_10_notebook7_runs_a_cell(lab: Session) -> None:
    page = lab.page.context.new_page()
    page.set_default_timeout(UI_MS)
    lab.log.attach(page)
    try:
        page.goto(lab.server.page("tree"))
        expect(page.locator(".jp-DirListing-item", has_text="notebook7.ipynb")).to_be_visible()
        lab.shot("10a-notebook7-tree", page)
        page.goto(lab.server.page("notebooks/notebook7.ipynb"))
        # Notebook 7's own shell, not JupyterLab's.
        expect(page.locator("#main-panel, .jp-NotebookApp").first).to_be_attached()
        expect(page.locator(".jp-CodeCell").first).to_be_visible()
        wait_kernel_ready(lab, page)
        cell = run_cell(lab, "(1..=6u64).product::<u64>()", page=page)
        wait_done(lab, cell, page)
        with lab.about(cell):
            assert result_text(cell) == "720"
        lab.shot("10b-notebook7-value", page)
    finally:
        page.close()
