"""The local runner's process handling, on tiny stand-in services (no stack needed)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import compose_local
import pytest
from compose_plan import LocalService

from tests.support import free_port, wait_until


@pytest.fixture(autouse=True)
def own_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STACK_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    (tmp_path / "run").mkdir()
    (tmp_path / "logs").mkdir()
    return tmp_path


def local(
    name: str, code: str, *, deps: dict[str, str] | None = None, **kw: object
) -> LocalService:
    return LocalService(
        name=name,
        module="x",
        argv=[sys.executable, "-c", code],
        env={},
        depends_on=deps or {},
        healthcheck=kw.get("healthcheck"),  # type: ignore[arg-type]
        one_shot=bool(kw.get("one_shot", False)),
        folders=list(kw.get("folders", [])),  # type: ignore[call-overload]
    )


def test_services_start_after_their_conditions_and_down_stops_them(tmp_path: Path) -> None:
    port = free_port()
    marker = tmp_path / "job-done"
    job = local("job", f"open({str(marker)!r}, 'w').write('1')", one_shot=True)
    # The server only starts once the job has completed (it reads the job's file).
    server = local(
        "web",
        f"import http.server, os; assert os.path.exists({str(marker)!r}); "
        f"http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler)"
        ".serve_forever()",
        deps={"job": "service_completed_successfully"},
        healthcheck=("http", f"http://127.0.0.1:{port}/"),
        folders=[tmp_path / "vol"],
    )
    state: dict = {"services": []}
    assert compose_local.start_all([job, server], state, timeout=30) == ""
    assert [entry["name"] for entry in state["services"]] == ["job", "web"]
    assert (tmp_path / "vol").is_dir()
    assert json.loads((tmp_path / "run" / "stack.json").read_text()) == state
    web_pid = state["services"][1]["pid"]
    assert (tmp_path / "run" / "web.pid").read_text().strip() == str(web_pid)
    assert compose_local.service_status(state["services"][0]) == "done"
    assert compose_local.service_status(state["services"][1]) == "healthy"

    compose_local.down()
    assert wait_until(lambda: not compose_local.alive(web_pid), 10)
    assert not list((tmp_path / "run").iterdir())


def test_a_service_that_exits_fails_up_with_its_log(tmp_path: Path) -> None:
    broken = local(
        "broken",
        "print('no config here'); raise SystemExit(3)",
        healthcheck=("http", f"http://127.0.0.1:{free_port()}/"),
    )
    error = compose_local.start_all([broken], {"services": []}, timeout=30)
    assert error.startswith("broken exited with status 3") and "no config here" in error
    compose_local.down()


def test_a_condition_that_can_never_hold_is_reported_not_waited_on() -> None:
    job = local("job", "pass", one_shot=True)
    waiter = local("waiter", "pass", deps={"job": "service_healthy"})
    error = compose_local.start_all([job, waiter], {"services": []}, timeout=30)
    assert error == "cannot start waiter: their depends_on conditions can never hold"
    compose_local.down()


def test_a_service_logs_to_its_own_daily_file_and_its_output_to_out(tmp_path: Path) -> None:
    """LOG_NAME names the service's log ({hostname}: one per replica); stderr logging is off
    (LOG_CONSOLE=false), so <service>.out holds only what it prints; a failure shows both."""
    code = (
        "import logging; from shared.logging_setup import configure_logging; "
        "configure_logging('svc'); logging.error('event=boom-logged'); print('boom-printed'); "
        "raise SystemExit(3)"
    )
    service = local("svc", code, healthcheck=("http", f"http://127.0.0.1:{free_port()}/"))
    env = {"LOG_NAME": "svc-{hostname}", "LOG_TO_FILE": "true"}
    service = LocalService(**{**vars(service), "env": env})
    error = compose_local.start_all([service], {"services": []}, timeout=30)
    log = tmp_path / "logs" / f"svc-{socket.gethostname()}.log"
    out = tmp_path / "logs" / "svc.out"
    assert "event=boom-logged" in log.read_text() and "boom-printed" not in log.read_text()
    assert "boom-printed" in out.read_text() and "boom-logged" not in out.read_text()
    assert "boom-printed" in error and "event=boom-logged" in error
    compose_local.down()
