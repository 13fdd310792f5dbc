"""Every notebook in notebooks/ runs from top to bottom without an error, with the
real `jupyter nbconvert --to notebook --execute` command, and with nbclient (the
engine behind nbconvert and papermill) where the outputs are checked cell by cell."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import kernel_helpers as kh

NOTEBOOKS = sorted((kh.REPO / "notebooks").glob("*.ipynb"))


def execute(path: Path, tmp_path: Path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="ferrocell", timeout=300, resources={
        "metadata": {"path": str(tmp_path)}})
    client.execute()
    return nb


def result(cell):
    """The text/plain of a cell's one execute_result."""
    results = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert len(results) == 1, cell.outputs
    return results[0].data["text/plain"]


def stdout(cell):
    """Everything a cell printed to stdout."""
    return "".join(o.text for o in cell.outputs
                   if o.output_type == "stream" and o.name == "stdout")


def outputs_of(nb):
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path, tmp_path):
    committed = nbformat.read(path, as_version=4)
    assert committed.metadata.kernelspec.name == "ferrocell"
    assert committed.metadata.kernelspec.language == "rust"
    for cell in committed.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} is committed with outputs")
    # As a person runs it headlessly: nbconvert's command line, its kernelspec
    # found through JUPYTER_PATH, the executed copy written next to the original.
    done = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter")), "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=300", "--output-dir", str(tmp_path), str(path)],
        cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    nb = nbformat.read(tmp_path / path.name, as_version=4)
    # Only cells tagged raises-exception (nbclient's convention) may fail.
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              and "raises-exception" not in cell.metadata.get("tags", [])
              for out in cell.outputs if out.output_type == "error"]
    assert errors == []
    counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
    assert nb.metadata.language_info.name == "rust"


def test_tour_outputs(tmp_path):
    nb = execute(kh.REPO / "notebooks" / "01-cells.ipynb", tmp_path)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]

    assert result(code_cells[0]) == "[2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47]"
    assert code_cells[1].outputs == []
    assert result(code_cells[2]) == "[0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377]"
    assert code_cells[3].outputs == []
    assert result(code_cells[4]) == "Complex { re: -3.0, im: 4.0 }"
    assert stdout(code_cells[4]) == "|z|² = 5\n"
    progress = stdout(code_cells[5])
    assert progress.count("\r") == 21 and progress.endswith("100%\ndone\n")

    displays = [o for cell in code_cells for o in cell.outputs if o.output_type == "display_data"]
    by_mime = {mime: o.data[mime] for o in displays for mime in o.data}
    assert "<table>" in by_mime["text/html"] and "<td>55</td>" in by_mime["text/html"]
    assert by_mime["image/svg+xml"].startswith("<svg") and "<rect" in by_mime["image/svg+xml"]
    assert "golden ratio" in by_mime["text/markdown"]

    # Variables made in one cell are used and changed in the next.
    assert code_cells[-3].outputs == []
    assert result(code_cells[-2]) == "143"
    listing = stdout(code_cells[-1])
    assert "total" in listing and "u64" in listing


def test_state_outputs(tmp_path):
    nb = execute(kh.REPO / "notebooks" / "02-state.ipynb", tmp_path)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]

    assert result(code_cells[0]) == '"{\\"cores\\":2,\\"lecture\\":\\"parallel Python\\"}"'
    assert result(code_cells[2]) == '"{\\"id\\":1,\\"value\\":0.5}"'
    [crash] = [o for o in code_cells[3].outputs if o.output_type == "error"]
    assert "SIGSEGV" in crash.evalue
    assert any("restored" in line and "runs" in line and "samples" in line
               for line in crash.traceback)
    assert result(code_cells[4]) == "(2, 5, 2.0)"
    listing = "".join(o.text for o in code_cells[5].outputs if o.output_type == "stream")
    assert "samples" in listing and "Sample" in listing


def test_threads_outputs(tmp_path):
    nb = execute(kh.REPO / "notebooks" / "03-threads.ipynb", tmp_path)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]

    # Five workers at once: every one starts before any exits; lines carry the rank.
    lines = stdout(code_cells[0]).splitlines()
    assert sorted(lines) == sorted(
        [f"[{r}] Thread #{r} starting." for r in range(5)]
        + [f"[{r}] Computation = {10 ** r}" for r in range(5)]
        + [f"[{r}] Thread #{r} exiting." for r in range(5)])
    last_start = max(i for i, line in enumerate(lines) if "starting" in line)
    first_exit = min(i for i, line in enumerate(lines) if "exiting" in line)
    assert last_start < first_exit
    assert result(code_cells[2]) == "148933"
    tables = [o for o in code_cells[3].outputs if o.output_type == "display_data"]
    assert "2 ranks on 2 threads" in tables[-1].data["text/plain"]
    assert result(code_cells[4]) == "148933"
    # Work stealing: chunks() on two threads, parallel_for() on every core.
    tables = [o for o in code_cells[5].outputs if o.output_type == "display_data"]
    assert "2 ranks on 2 threads" in tables[-1].data["text/plain"]
    assert result(code_cells[6]) == "148933"
    assert result(code_cells[7]) == "148933"
    charts = [o for o in code_cells[8].outputs
              if o.output_type == "display_data" and "image/svg+xml" in o.data]
    assert len(charts) == 1
    assert "serial fraction" in charts[0].data["text/plain"]
    assert charts[0].data["image/svg+xml"].count("<circle") == 2


def test_processes_outputs(tmp_path):
    nb = execute(kh.REPO / "notebooks" / "04-processes.ipynb", tmp_path)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]

    # The lecture's five processes: all start before any exits, each its own pid.
    lines = stdout(code_cells[0]).splitlines()
    starts = [line for line in lines if "starting" in line]
    assert sorted(line.split(" (pid")[0] for line in starts) == [
        f"[{r}] Process #{r} starting" for r in range(5)]
    assert len({line.split("pid ")[1] for line in starts}) == 5
    for r in range(5):
        assert f"[{r}] Computation = {r ** 10}" in lines and f"[{r}] Process #{r} exiting." in lines
    last_start = max(i for i, line in enumerate(lines) if "starting" in line)
    first_exit = min(i for i, line in enumerate(lines) if "exiting" in line)
    assert last_start < first_exit
    assert result(code_cells[3]) == "true"  # workers are not the runner
    assert result(code_cells[6]) == "148933"  # primes below 2 000 000, from the workers
    assert abs(float(result(code_cells[9])) - 3.14159) < 0.01  # Monte Carlo pi
    # The aborting rank is reported; rank 0's value is kept; the next cell runs.
    [error] = [o for o in code_cells[10].outputs if o.output_type == "error"]
    assert "SIGABRT" in "\n".join(error.traceback)
    assert "100" in code_cells[10].outputs[0].data["text/plain"]
    assert "rank 1 still working" in code_cells[11].outputs[-1].data["text/plain"]
    charts = [o for o in code_cells[12].outputs
              if o.output_type == "display_data" and "image/svg+xml" in o.data]
    assert len(charts) == 1 and charts[0].data["image/svg+xml"].count("<circle") == 2


def test_cluster_outputs(tmp_path):
    nb = execute(kh.REPO / "notebooks" / "05-cluster.ipynb", tmp_path)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]

    def text(cell):
        return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                       for o in cell.outputs)

    assert "Cluster ready: 2 engines" in text(code_cells[0])
    assert len([line for line in stdout(code_cells[1]).splitlines() if " ready " in line]) == 2
    lines = sorted(stdout(code_cells[2]).splitlines())
    assert [line.split(", in process")[0] for line in lines] == [
        "[0] engine rank 0 of 2", "[1] engine rank 1 of 2"]
    assert "2 ranks on 2 engines" in text(code_cells[2])
    assert result(code_cells[5]) == "35"  # letters in the lecture's sentence, counted on the engines
    assert result(code_cells[8]) == "148933"
    assert '"only engine 1, as rank 0 of 1"' in text(code_cells[9])
    assert sorted(stdout(code_cells[10]).splitlines()) == [
        "[0] rank 0 holds 500000 squares", "[1] rank 1 holds 500000 squares"]
    sums = [int(v) for v in re.findall(r"^\s+\d\s+(\d+)\s", text(code_cells[11]), re.M)]
    assert sum(sums) == sum(n * n for n in range(1_000_000))
    # Gathered: each engine's sum, typed, in the notebook.
    assert result(code_cells[13]) == str(sum(n * n for n in range(1_000_000)))
    # A background run: the cell hands back a handle, a cell runs meanwhile, %wait binds.
    assert "background run `more_counts` on 2 engines" in text(code_cells[14])
    assert result(code_cells[15]) == "4000"
    assert "more_counts" in stdout(code_cells[16])
    assert "4000 items on 2 engines" in text(code_cells[17])
    assert result(code_cells[17]) == "283146"  # the primes below 4 000 000
    assert "Cluster stopped." in stdout(code_cells[18])
    # MPI inside cells: four ranks of one mpirun reduce their shares to the same π.
    assert "Cluster ready: 4 engines started by mpirun" in text(code_cells[19])
    shares = re.findall(r"rank (\d) of 4: my share (\d\.\d+), pi = (\d\.\d+)", text(code_cells[21]))
    assert sorted(r for r, _, _ in shares) == ["0", "1", "2", "3"], text(code_cells[21])
    assert {pi for _, _, pi in shares} == {"3.1415926536"}
    assert abs(sum(float(s) for _, s, _ in shares) - 3.141592653589793) < 1e-5
    assert "Cluster stopped." in stdout(code_cells[22])


def test_native_outputs(tmp_path):
    nb = execute(kh.REPO / "notebooks" / "07-native.ipynb", tmp_path)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    # Tiered: the first run at level 1, the second at level 3, said so.
    assert result(code_cells[1]) == result(code_cells[2]) == "148933"
    assert "tiered up" not in stdout(code_cells[1])
    assert "tiered up: opt-level 3" in stdout(code_cells[2])
    assert "count_primes" in stdout(code_cells[3])
    for timed in (4, 5, 7, 13, 18):
        assert " per loop (mean ± std. dev. of " in stdout(code_cells[timed])
    assert result(code_cells[10]) == "148933"  # work stealing over every core
    assert result(code_cells[12]) == "148933"  # C
    assert stdout(code_cells[14]).startswith("0: ")  # the OpenCL devices
    assert result(code_cells[16]) == "99998.0"  # vector add
    gpu, cpu = (int(n) for n in result(code_cells[17]).strip("()").split(", "))
    assert abs(gpu - cpu) <= cpu // 1000, (gpu, cpu)  # the same set, up to rounding
    [table] = [o for o in code_cells[19].outputs if o.output_type == "display_data"]
    text = table.data["text/markdown"]
    assert text.count(" ms |") == 7 and "OpenCL" in text and "C, -O3" in text
