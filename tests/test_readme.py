"""Every Python example in README.md runs as written.

Each ```python block is executed on its own, in a fresh namespace, exactly as
a reader would paste it. A block preceded by ``<!-- not-tested: reason -->``
is skipped (the reason is shown); one preceded by ``<!-- pytest: ... -->`` is
a test file of the reader's own and is run by pytest in a subprocess, the way
the reader would run it. Examples that need Redis read
``RATEKEEPER_REDIS_URL``, which is pointed at the suite's redis-server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"<!--\s*(not-tested|pytest)\s*:?\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Example:
    line: int
    code: str
    marker: Optional[str]
    reason: str


def readme_examples(text: str) -> list[Example]:
    """The README's python blocks, each with the marker comment on the line before it."""
    examples = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        examples.append(
            Example(
                line,
                match.group(1),
                marker.group(1) if marker else None,
                marker.group(2) if marker else "",
            )
        )
    return examples


EXAMPLES = readme_examples(README.read_text(encoding="utf-8"))


def test_the_readme_has_examples_and_few_are_untested() -> None:
    untested = [e for e in EXAMPLES if e.marker == "not-tested"]
    assert len(EXAMPLES) >= 15
    assert len(untested) <= 2, [e.line for e in untested]
    assert all(e.reason for e in untested), "every not-tested block must say why"


def test_a_marker_applies_only_to_the_block_right_after_it() -> None:
    text = "<!-- not-tested: key -->\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n"
    first, second = readme_examples(text)
    assert (first.marker, first.reason, first.line) == ("not-tested", "key", 2)
    assert (second.marker, second.line) == (None, 6)


@pytest.fixture
def redis_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATEKEEPER_REDIS_URL", redis_url)


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"README.md:{e.line}" for e in EXAMPLES])
def test_readme_example_runs(
    example: Example,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if example.marker == "not-tested":
        pytest.skip(f"not tested: {example.reason}")
    if "OPENROUTER_API_KEY" in example.code:
        monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-readme-test")
    if "RATEKEEPER_REDIS_URL" in example.code:
        request.getfixturevalue("redis_env")
    if example.marker == "pytest":
        test_file = tmp_path / "test_readme_example.py"
        test_file.write_text(example.code, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return
    code = compile(example.code, f"README.md:{example.line}", "exec")
    exec(code, {"__name__": f"readme_example_{example.line}"})
