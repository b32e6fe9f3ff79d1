"""The ``ratekeeper`` command names its missing optional packages instead of a traceback."""

from __future__ import annotations

import sys

import pytest

from ratekeeper import cli


def forget_demo_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ratekeeper._demo", "ratekeeper.testing.mock_server", "ratekeeper.testing._app"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_demo_without_uvicorn_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    forget_demo_modules(monkeypatch)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` now fails
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "'uvicorn'" in err
    assert "ratekeeper[cli]" in err


def test_a_missing_module_that_is_not_an_extra_still_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forget_demo_modules(monkeypatch)
    monkeypatch.setitem(sys.modules, "ratekeeper.batch", None)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["demo"])
