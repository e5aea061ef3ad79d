"""How ``flcore.build.book notebooks`` runs papermill: the cell timeout of a notebook that only reads
stored runs, its one retry, and the explorer (widgets drawing into an Output) executing to the
end under papermill."""
import subprocess
import sys

import nbformat
import pytest

from flcore.build import book


def test_cell_timeout_reads_the_environment(monkeypatch):
    monkeypatch.delenv(book.CELL_TIMEOUT_ENV, raising=False)
    assert book.cell_timeout() == book.CELL_TIMEOUT_DEFAULT
    monkeypatch.setenv(book.CELL_TIMEOUT_ENV, "0")
    assert book.cell_timeout() == 0
    for bad in ("ten", "-5", "1.5"):
        monkeypatch.setenv(book.CELL_TIMEOUT_ENV, bad)
        with pytest.raises(SystemExit, match="FLCORE_CELL_TIMEOUT must be a whole number"):
            book.cell_timeout()


def _fake(tmp_path, stderr_text, rc):
    """A command that counts its calls in a file, writes ``stderr_text`` and exits ``rc``."""
    counter = tmp_path / "calls"
    code = (f"import sys, pathlib; p = pathlib.Path({str(counter)!r}); "
            f"p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1'); "
            f"sys.stderr.write({stderr_text!r}); sys.exit({rc})")
    return [sys.executable, "-c", code], counter


def test_a_cell_timeout_is_retried_once(tmp_path, capsys):
    cmd, calls = _fake(tmp_path, "nbclient.exceptions.CellTimeoutError: A cell timed out\n", 1)
    assert book._papermill(cmd, "explorer", 600) == 1
    assert calls.read_text() == "2"
    err = capsys.readouterr().err
    assert "did not finish within 600 s" in err and "fresh kernel" in err


def test_a_cell_error_is_not_retried(tmp_path):
    cmd, calls = _fake(tmp_path, "PapermillExecutionError: ZeroDivisionError\n", 1)
    assert book._papermill(cmd, "explorer", 600) == 1
    assert calls.read_text() == "1"


def test_a_success_runs_once(tmp_path):
    cmd, calls = _fake(tmp_path, "", 0)
    assert book._papermill(cmd, "explorer", 600) == 0
    assert calls.read_text() == "1"


def test_the_explorer_executes_to_the_end_under_papermill(tmp_path):
    """The explorer's last cell draws into an ipywidgets Output and displays the controls; the
    notebook client sometimes misses that cell's reply until the cell timeout's last poll, which
    must then find it and go on (no error), as ``flcore.build.book notebooks`` relies on."""
    book.ensure_kernel()
    out = tmp_path / "explorer.ipynb"
    proc = subprocess.run([sys.executable, "-m", "papermill", str(book.NOTEBOOKS / "explorer.ipynb"), str(out),
                           "--kernel", "python3", "--cwd", str(book.ROOT), "--execution-timeout", str(book.CELL_TIMEOUT_DEFAULT),
                           "-p", "profile", "default"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    kinds = {o.get("output_type") for o in last.outputs}
    assert "display_data" in kinds, last.outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in last.outputs)
