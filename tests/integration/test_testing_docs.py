"""docs/testing.md's example project, run as written: its files are the doc's fenced blocks whose first
line names the file (``# dags/nightly_load.py``), written to a temporary project and tested with pytest in
a fresh process against this package, as a user would run them."""

from __future__ import annotations

import re
import textwrap

from tests.integration.user_project import ROOT, outcome, run_pytest, write_project

DOC = ROOT / "docs" / "testing.md"
FENCED_BLOCK = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
FILE_MARKER = re.compile(r"# ([\w./-]+\.(?:py|ini))")


def example_files() -> dict[str, str]:
    """``{path: text}`` of the doc's file blocks. Every Python block must be one, so none goes untested."""
    files: dict[str, str] = {}
    for indent, language, body in FENCED_BLOCK.findall(DOC.read_text()):
        if language not in ("python", "ini"):
            continue
        text = textwrap.dedent(body) if indent else body
        marker = FILE_MARKER.fullmatch(text.partition("\n")[0])
        assert marker or language != "python", f"a Python block of {DOC.name} names no file:\n{text}"
        if marker:
            files[marker.group(1)] = text
    return files


def test_the_example_project_passes_as_written(tmp_path):
    files = example_files()
    assert {"pytest.ini", "dags/nightly_load.py", "tests/test_nightly_load.py"} <= set(files)
    assert ".partial(" in files["dags/nightly_load.py"]  # the example keeps a mapped task
    tests = sum(len(re.findall(r"^def test_", text, re.MULTILINE)) for text in files.values())
    project = write_project(tmp_path / "project", files)

    result = run_pytest(project, "-q")

    assert result.returncode == 0, outcome(result)
    assert re.search(rf"^{tests} passed\b", result.stdout, re.MULTILINE), outcome(result)
