"""Which Prefect API a command records in: the configured one, found without importing Prefect
here, else (when asked to record anyway) a quiet temporary server of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from freshrag.parse_worker import die_with_parent

ASK_S = 60.0  # a loaded machine imports Prefect's settings slowly
START_S = 180.0  # ... and starts its server slowly
_ASK = ("from prefect.settings import get_current_settings as s\n"
        "print('url=' + str(s().api.url or ''))\n")
NOT_RECORDED = ("batches are not recorded in Prefect: no Prefect API is configured (set "
                "PREFECT_API_URL, e.g. to a `prefect server start`, to record them; or pass "
                "--record task for a temporary local server)")


class ConfiguredUrl:
    """PREFECT_API_URL as Prefect resolves it (the environment, the active profile, a
    prefect.toml or .env in the working folder). When Prefect is not imported yet, a child
    process asks it (~1 s, started at once, read by url()): its settings alone hold ~40 MB for
    the rest of a process that may never record."""

    def __init__(self) -> None:
        self._url: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        env = os.environ.get("PREFECT_API_URL", "").strip()
        if env:
            self._url = env.rstrip("/")
        elif "prefect" in sys.modules:
            from flows.link import api_url

            self._url = api_url()
        else:
            self._proc = subprocess.Popen([sys.executable, "-c", _ASK], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          text=True)

    def known(self) -> bool:
        """Whether url() answers without waiting."""
        return self._proc is None or self._proc.poll() is not None

    def url(self) -> str | None:
        """The configured API URL, or None (none configured, or Prefect's settings unreadable)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                out, _ = proc.communicate(timeout=ASK_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            lines = [ln for ln in out.splitlines() if ln.startswith("url=")]
            if proc.returncode == 0 and lines:
                self._url = lines[-1][4:].strip().rstrip("/") or None
        return self._url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TemporaryServer:
    """Prefect's server app under uvicorn in a child process, as Prefect's own ephemeral mode
    runs it, but with its output in `log_path` (a server-side traceback is not the user's to
    read), its telemetry off, and stopped with the command (the kernel kills it if the command
    dies; Prefect's own is left running when a command exits without interpreter teardown)."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start it (without waiting for it to answer); returns its API URL."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                    "PREFECT__SERVER_FINAL": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory",
                 "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port",
                 str(self.port), "--log-level", "error", "--lifespan", "on"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                # its own session: a Ctrl-C for the watcher does not stop it before the
                # watcher's last records are written
                start_new_session=True, preexec_fn=die_with_parent)
        return self.url

    def wait_ready(self, timeout: float = START_S) -> str | None:
        """None once it answers /health; else why not (it exited, or did not answer)."""
        import httpx

        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                return f"the temporary Prefect server exited {self.proc.returncode}; its " \
                       f"log: {self.log_path}"
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return None
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                return f"the temporary Prefect server did not answer within {timeout:g} s; " \
                       f"its log: {self.log_path}"
            time.sleep(0.2)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
