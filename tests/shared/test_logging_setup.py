"""Every service's logging: stderr and LOG_DIR/<name>.log, rolled over at midnight into
<name>.log.YYYY-MM-DD with LOG_KEEP_DAYS of those kept."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import date, timedelta
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path

import pytest

from shared.logging_setup import configure_logging, rotating_handler
from shared.settings import CommonSettings
from tests.support import ProcessGroup, own_key_prefix, wait_until


@pytest.fixture(autouse=True)
def keep_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def settings(tmp_path: Path, **values: object) -> CommonSettings:
    return CommonSettings(log_dir=tmp_path, log_to_file=True, **values)


def test_a_service_logs_to_stderr_and_to_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = configure_logging("svc", "INFO", settings(tmp_path))
    assert path == tmp_path / "svc.log"
    logging.getLogger("x").info("event=hello n=%d", 1)
    line = path.read_text().strip()
    assert line.endswith("level=INFO service=svc logger=x event=hello n=1")
    assert "event=hello" in capsys.readouterr().err


def test_log_name_names_the_file_with_the_host_name_of_a_replica(tmp_path: Path) -> None:
    common = settings(tmp_path, log_name="model-worker-{hostname}", log_console=False)
    path = configure_logging("model_worker", "INFO", common)
    assert path == tmp_path / f"model-worker-{socket.gethostname()}.log"
    assert [type(h) for h in logging.getLogger().handlers] == [TimedRotatingFileHandler]


def test_one_off_commands_and_log_to_file_off_write_no_file(tmp_path: Path) -> None:
    assert configure_logging("cli", "INFO", settings(tmp_path), to_file=False) is None
    off = CommonSettings(log_dir=tmp_path, log_to_file=False, log_console=False)
    assert configure_logging("svc", "INFO", off) is None  # stderr stays: never no log at all
    logging.getLogger().warning("event=x")
    assert list(tmp_path.iterdir()) == []
    assert [type(h) for h in logging.getLogger().handlers] == [logging.StreamHandler]


def test_the_file_rolls_over_at_midnight_into_the_days_file(tmp_path: Path) -> None:
    handler = rotating_handler(tmp_path / "svc.log", keep_days=7)
    assert isinstance(handler, TimedRotatingFileHandler) and handler.when == "MIDNIGHT"
    log = logging.getLogger("rotation-test")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("before midnight")
        handler.rolloverAt = int(time.time()) - 1  # midnight has just passed
        log.warning("after midnight")
    finally:
        log.removeHandler(handler)
        handler.close()
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    assert (tmp_path / f"svc.log.{yesterday}").read_text() == "before midnight\n"
    assert (tmp_path / "svc.log").read_text() == "after midnight\n"


def test_only_the_newest_keep_days_files_are_kept(tmp_path: Path) -> None:
    old_days = [date(2026, 1, day).isoformat() for day in range(1, 6)]
    for day in old_days:
        (tmp_path / f"svc.log.{day}").write_text(day)
    (tmp_path / "other.log.2026-01-01").write_text("another service's")
    handler = rotating_handler(tmp_path / "svc.log", keep_days=3)
    try:
        handler.emit(logging.makeLogRecord({"msg": "today"}))
        handler.doRollover()
    finally:
        handler.close()
    kept = sorted(p.name for p in tmp_path.glob("svc.log.*"))
    assert len(kept) == 3 and kept[:2] == [f"svc.log.{d}" for d in old_days[-2:]]
    assert (tmp_path / "other.log.2026-01-01").exists()


def test_bad_log_keep_days_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_KEEP_DAYS", "0")
    with pytest.raises(ValueError, match="log_keep_days"):
        CommonSettings()


@pytest.mark.slow
def test_a_celery_service_keeps_its_file_once_celery_has_started(
    tmp_path: Path, redis_url: str
) -> None:
    """Celery would replace the root logger's handlers; the merger's file still gets its lines."""
    env = {"REDIS_URL": redis_url, "LOG_DIR": str(tmp_path / "logs"), "LOG_TO_FILE": "true"}
    log = tmp_path / "logs" / "merger.log"
    with (
        own_key_prefix(redis_url) as prefix,
        ProcessGroup(tmp_path, {**env, "REDIS_KEY_PREFIX": prefix}) as group,
    ):
        merger = group.start("merger", "services.merger")
        assert wait_until(lambda: log.exists() and " ready." in log.read_text(), 120, 0.5), (
            merger.logs()[-3000:]
        )
    assert "service=merger logger=celery" in log.read_text()
