"""One table of exit codes for every command (issue 17): 1 a check failed, 2 usage, 3 the
platform, 4 not running; never a traceback for either."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mbs.cli import main
from mbs.cli.exits import Failed, NotRunning, Usage, code_for
from mbs.errors import BrokerError, MbsError, ScaffoldRefused
from mbs.settings import get_settings
from mbs.testing import free_port


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (Failed("incompatible"), 1),
        (Usage("no unit named 'x'"), 2),
        (ScaffoldRefused("not a checkout"), 2),
        (BrokerError("cannot reach Kafka"), 3),
        (MbsError("the gateway did not start"), 3),
        (NotRunning("no broker"), 4),
    ],
)
def test_each_error_has_its_code(error: MbsError, code: int) -> None:
    assert code_for(error) == code


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def exit_code(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    code = stopped.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


@pytest.mark.usefixtures("fresh_settings")
def test_usage_errors_are_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(capsys, "run", "unit", "nosuch")[0] == 2
    assert exit_code(capsys, "partners", "add", "nosuch")[0] == 2
    assert exit_code(capsys, "broker", "up", "--port", "1")[0] == 2
    assert exit_code(capsys, "units", "-o", "xml")[0] == 2


@pytest.mark.usefixtures("fresh_settings")
def test_a_bad_setting_is_2_and_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MBS_GATEWAY_PORT", "0")
    code, said = exit_code(capsys, "scorecard")
    assert code == 2
    assert "MBS_GATEWAY_PORT" in said
    assert "Traceback" not in said


@pytest.mark.usefixtures("fresh_settings")
def test_an_unreachable_gateway_is_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, said = exit_code(capsys, "ledger", "--gateway", f"http://127.0.0.1:{free_port()}")
    assert code == 3
    assert "cannot reach the gateway" in said
