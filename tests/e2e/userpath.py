"""Drive freshrag as a user does: the installed `freshrag` command, a config file in its own
folder, the working directory somewhere else, background commands stopped at the end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
FRESHRAG = BIN / "freshrag"  # the console script pip installed, not `python -m`
WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], Any], what: str, limit: float = WAIT_S,
               every: float = 0.05) -> Any:
    """Poll `pred` until it returns something truthy; fail naming `what` after `limit` s."""
    deadline = time.monotonic() + limit
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(every)


def user_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a user's shell: no FRESHRAG_* or PREFECT_API_URL of the test run's
    own, the model offline (as README's setup leaves it)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FRESHRAG_") and k not in ("PREFECT_API_URL", "PYTHONPATH")}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    env.update(extra or {})
    return env


@dataclass
class Background:
    """A long-running `freshrag` command (watch, serve, up) with its log."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, limit: float = WAIT_S) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode} before {text!r}:\n"
                                     + self.log()[-4000:])
            return text in self.log()
        wait_until(seen, f"{text!r} in the log", limit)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@dataclass
class Project:
    """A user's project: `root/freshrag.toml`, `root/docs/`, and a working directory
    `elsewhere/` that is not the project's folder."""

    root: Path
    elsewhere: Path
    env: dict[str, str] = field(default_factory=dict)
    running: list[Background] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.root / "freshrag.toml"

    @property
    def docs(self) -> Path:
        return self.root / "docs"

    def write_config(self, text: str) -> Path:
        self.config.write_text(text, encoding="utf-8")
        return self.config

    def argv(self, args: tuple[str, ...], with_config: bool) -> list[str]:
        # After the command, which every form of the CLI accepts (`freshrag sql X --config`).
        return [str(FRESHRAG), *args, *(["--config", str(self.config)] if with_config else [])]

    def run(self, *args: str, with_config: bool = True, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`freshrag ARGS... --config ROOT/freshrag.toml` run from `elsewhere/`."""
        return subprocess.run(self.argv(args, with_config), cwd=self.elsewhere,
                              capture_output=True, text=True, timeout=timeout,
                              env=user_env({**self.env, **(env or {})}))

    def json(self, *args: str, **kw: Any) -> Any:
        done = self.run(*args, "--json", **kw)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"freshrag {' '.join(args)} --json exited {done.returncode}; "
                                 f"stdout={done.stdout!r} stderr={done.stderr[-3000:]}") from exc

    def start(self, *args: str, with_config: bool = True, name: str | None = None,
              env: dict[str, str] | None = None) -> Background:
        """Start a long-running command in the background; stopped at the test's end."""
        log_path = self.root / f"{name or args[0]}-{len(self.running)}.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(self.argv(args, with_config), cwd=self.elsewhere, stdout=log,
                                stderr=subprocess.STDOUT, env=user_env({**self.env, **(env or {})}))
        log.close()
        bg = Background(proc, log_path)
        self.running.append(bg)
        return bg

    def spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> Background:
        """Any long-running command a user starts (e.g. `python deployments/serve.py`), from
        `elsewhere/` with the user's environment; stopped at the test's end."""
        log_path = self.root / f"{name}-{len(self.running)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, cwd=self.elsewhere, stdout=log, stderr=subprocess.STDOUT,
                                    env=user_env({**self.env, **(env or {})}))
        bg = Background(proc, log_path)
        self.running.append(bg)
        return bg

    def serve(self, *args: str) -> tuple[Background, str]:
        """`freshrag serve` on a free port; returns it and its base URL once /health answers."""
        port = free_port()
        bg = self.start("serve", "--port", str(port), *args)
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if bg.proc.poll() is not None:
                raise AssertionError(f"serve exited {bg.proc.returncode}:\n{bg.log()[-4000:]}")
            try:
                return httpx.get(f"{base}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(up, "freshrag serve to answer /health", 120, 0.2)
        return bg, base

    def stop_all(self) -> None:
        for bg in reversed(self.running):
            bg.stop()
        self.running.clear()


def make_project(tmp: Path) -> Iterator[Project]:
    root, elsewhere = tmp / "project", tmp / "elsewhere"
    (root / "docs").mkdir(parents=True)
    elsewhere.mkdir()
    project = Project(root, elsewhere, env={"PREFECT_HOME": str(tmp / "prefect-home")})
    try:
        yield project
    finally:
        project.stop_all()
