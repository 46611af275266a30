"""The pytest plugin that users' own tests get with the package: the README's example test runs as it
stands (so the docs cannot drift), and the entry point names the plugin module."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = re.compile(r"<!-- tests/test_pytest_plugin.py runs this example[^>]*-->\n```python\n(.*?)```", re.S)


def readme_example() -> str:
    found = EXAMPLE.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(found) == 1, "README.md shows one example test for the plugin"
    return str(found[0])


def test_the_readme_example_test_passes(pytester: pytest.Pytester) -> None:
    # In a subprocess: an in-process run unloads the modules it imported (numpy cannot load twice).
    pytester.makepyfile(test_alerts=readme_example())
    result = pytester.runpytest_subprocess("-p", "monitor.testing.plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_readme_example_fails_when_the_alerts_differ(pytester: pytest.Pytester) -> None:
    """The example's assertions can fail: with a threshold no cluster reaches, it does."""
    pytester.makepyfile(test_alerts=readme_example().replace("threshold=20", "threshold=500"))
    result = pytester.runpytest_subprocess("-p", "monitor.testing.plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)


def test_the_entry_point_registers_the_plugin_module_under_its_own_name() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"]["pytest11"] == {"monitor.testing.plugin": "monitor.testing.plugin"}
    from monitor.testing import plugin

    assert callable(plugin.replay_archive) and callable(plugin.monitor_sample)


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """pytest loads the plugin in every session of an environment with the package installed."""
    code = (
        "import sys, monitor.testing.plugin; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'PIL', 'torch', 'faust')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
