"""The runner's side of the driver protocol: one SDK's driver program as a child process."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

from tools.stack import ROOT, die_with_parent

REPLY_TIMEOUT_S = 60.0


class DriverError(AssertionError):
    """The driver answered ``ok: false``, answered nothing in time, or died."""


class Driver:
    """``argv`` started in ``cwd``; :meth:`call` sends one command and returns its answer."""

    def __init__(
        self, argv: list[str], *, log_path: Path, cwd: Path = ROOT, env: dict[str, str] | None = None
    ):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.log_path = log_path
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - fork-safe: see tools.stack.die_with_parent
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self._lines.put(raw.decode("utf-8", "replace"))
        self._lines.put(None)

    def call(self, cmd: str, *, timeout_s: float = REPLY_TIMEOUT_S, check: bool = True, **args: Any) -> dict:
        """Send ``{"cmd": cmd, "id": n, **args}``; the answer (DriverError if not ok and ``check``)."""
        self._next_id += 1
        ident = self._next_id
        line = json.dumps({"cmd": cmd, "id": ident, **args}, separators=(",", ":")) + "\n"
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(line.encode())
            self.popen.stdin.flush()
        except BrokenPipeError:
            raise DriverError(f"{cmd}: the driver is gone ({self.tail()})") from None
        while True:
            try:
                raw = self._lines.get(timeout=timeout_s)
            except queue.Empty:
                raise DriverError(f"{cmd}: no answer in {timeout_s:g} s ({self.tail()})") from None
            if raw is None:
                raise DriverError(f"{cmd}: the driver exited ({self.tail()})")
            try:
                reply = json.loads(raw)
            except ValueError:
                continue  # a stray line of the SDK's own: not an answer
            if isinstance(reply, dict) and reply.get("id") == ident:
                break
        if check and not reply.get("ok"):
            raise DriverError(f"{cmd}: {reply.get('error')}")
        return reply

    def tail(self) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except FileNotFoundError:
            return ""

    def wait_exit(self, timeout_s: float = 10.0) -> int | None:
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Say ``quit``, then kill what is left of the driver's process group."""
        if self.popen.poll() is None:
            try:
                assert self.popen.stdin is not None
                self.popen.stdin.write(b'{"cmd":"quit"}\n')
                self.popen.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            if self.wait_exit(5) is None:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
