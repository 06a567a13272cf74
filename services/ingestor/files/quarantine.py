"""``rejected.jsonl``: malformed inputs are set aside with their reason instead of crashing the
run or disappearing (one JSON line per rejected record or file)."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any


class RejectedLog(contextlib.AbstractContextManager):
    """Append-only writer for quarantined records; safe to share between threads."""

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a" if append else "w", encoding="utf-8")
        self._lock = threading.Lock()
        self.count = 0

    def add(
        self,
        source: str,
        stage: str,
        reason: str,
        record: Any = None,
        file: str | None = None,
        detail: str | None = None,
    ) -> None:
        line = {"source": source, "stage": stage, "reason": reason, "file": file, "record": record}
        if detail:
            line["detail"] = detail
        # ASCII escapes: a malformed record may hold characters UTF-8 cannot encode.
        text = json.dumps(line, default=str)
        with self._lock:
            self._file.write(text + "\n")
            self.count += 1

    def close(self) -> None:
        self._file.close()

    def __exit__(self, *exc: object) -> None:
        self.close()
