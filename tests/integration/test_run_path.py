"""One run's path through the package (``benchmarks/run_path.py``): the README's code map names every module on it,
in order, and the two platforms' runs enter the same modules, each its own twin."""

from __future__ import annotations

import importlib.util
import re
import sys
from functools import cache

from tests.integration.user_project import ROOT

CODE_MAP = re.compile(r"^## Code map\n(.*?)\n(?=## )", re.MULTILINE | re.DOTALL)


@cache
def measured(platform: str):
    spec = importlib.util.spec_from_file_location("run_path", ROOT / "benchmarks" / "run_path.py")
    assert spec is not None and spec.loader is not None
    run_path = sys.modules["run_path"] = importlib.util.module_from_spec(spec)  # its dataclasses look it up there
    spec.loader.exec_module(run_path)
    return run_path.measure(platform)


def code_map() -> str:
    found = CODE_MAP.search((ROOT / "README.md").read_text())
    assert found, "README.md has no '## Code map' section"
    return found.group(1).strip()


def test_the_readme_code_map_names_every_module_of_a_run_in_order():
    path = measured("aws")
    assert path.outcome["status"] == "Success"
    section = code_map()
    assert len(section.splitlines()) + 1 <= 25, "the Code map section is over 25 lines"
    mapped = re.findall(r"^\| [\w ,]+ \| `([\w/]+\.py)` \|", section, re.MULTILINE)
    assert mapped == path.modules, f"the run's path is now {path.modules}: update the README's Code map"


def test_the_platforms_mirror_each_other_along_the_path():
    aws, azure = measured("aws"), measured("azure")
    assert azure.outcome["status"] == "Success"
    twins = {module.replace("azure_batch", "aws_batch") for module in azure.modules}
    assert twins == set(aws.modules)
    assert len(azure.modules) == len(aws.modules)
