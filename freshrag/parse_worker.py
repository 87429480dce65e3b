"""Parsing in a child process, so a parse that hangs past parse.timeout_s or crashes is reported."""

from __future__ import annotations

import importlib
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
from typing import IO, Any

from freshrag.model import Element, Item
from freshrag.parse import ParseError
from freshrag.trim import trim

_HEADER = struct.Struct(">Q")
IDLE_TRIM_S = 1.0  # no item for this long after a parse: trim the heap


def _send(out: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()


def _recv(inp: IO[bytes]) -> Any:
    head = inp.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = inp.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


class IsolatedParser:
    """A Parser that runs `target` (module:Class, a Parser) in one long-lived child process.
    A parse that takes longer than `timeout_s` kills the child and fails with the reason; so
    does a child that dies (a crash in a C library on a pathological file). The next parse
    starts a new child. Importing a file type's partitioner the first time (seconds) is not
    counted in the timeout: it has its own bound, `startup_s`."""

    def __init__(self, timeout_s: float = 120.0,
                 target: str = "freshrag.parse:UnstructuredParser", startup_s: float = 300.0,
                 options: dict[str, Any] | None = None):
        self.timeout_s = timeout_s
        self.startup_s = startup_s
        self.target = target
        self.options = dict(options or {})  # keyword arguments of the target's constructor
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _child(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "freshrag.parse_worker", self.target,
                 json.dumps(self.options)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return self._proc

    def parse(self, item: Item) -> list[Element]:
        with self._lock:
            proc = self._child()
            assert proc.stdin is not None and proc.stdout is not None
            stdin, stdout = proc.stdin, proc.stdout
            timed_out = threading.Event()

            def ask() -> Any:
                _send(stdin, item)
                return _recv(stdout)

            try:  # the child answers ("started", None) once ready, then with the result
                reply = self._guarded(self.startup_s, timed_out, proc, ask)
                if reply is not None:
                    reply = self._guarded(self.timeout_s, timed_out, proc,
                                          lambda: _recv(stdout))
            except (BrokenPipeError, OSError):
                reply = None
            if reply is None:
                self._discard(proc)
                if timed_out.is_set():
                    raise ParseError(f"parse timed out after {self.timeout_s:g} s "
                                     "(parse.timeout_s); the parser was stopped")
                raise ParseError(f"the parser process died (exit {proc.returncode}) on this "
                                 "file")
        status, value = reply
        if status == "ok":
            elements: list[Element] = value
            return elements
        raise ParseError(value)

    @staticmethod
    def _guarded(seconds: float, timed_out: threading.Event, proc: subprocess.Popen[bytes],
                 fn: Any) -> Any:
        """Call fn; if it takes longer than `seconds`, kill the child (fn then sees EOF)."""
        def expire() -> None:
            timed_out.set()
            proc.kill()

        watchdog = threading.Timer(seconds, expire)
        watchdog.start()
        try:
            return fn()
        finally:
            watchdog.cancel()

    def _discard(self, proc: subprocess.Popen[bytes]) -> None:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        self._proc = None

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()  # EOF: the child exits
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def die_with_parent() -> None:
    """Linux: the kernel kills this child when its parent dies (a kill -9 leaves no orphan)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    die_with_parent()
    # Ctrl-C reaches the whole process group: the parent decides when this child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() == 1:
        return
    module, cls = sys.argv[1].split(":")
    options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    parser = getattr(importlib.import_module(module), cls)(**options)
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the protocol
    trimmed = False
    while True:
        if not trimmed and not select.select([inp], [], [], IDLE_TRIM_S)[0]:
            trim()  # idle: what the parses freed goes back to the system
            trimmed = True
        item = _recv(inp)
        trimmed = False
        if item is None:
            return
        prepare = getattr(parser, "prepare", None)
        try:  # imports for this file type, outside the parse timeout
            if prepare is not None:
                prepare(item)
        except Exception:
            pass  # the parse itself reports it
        _send(out, ("started", None))
        try:
            reply: tuple[str, Any] = ("ok", parser.parse(item))
        except ParseError as exc:
            reply = ("error", str(exc))
        except Exception as exc:
            reply = ("error", f"parser failed: {type(exc).__name__}: {exc}")
        _send(out, reply)


if __name__ == "__main__":
    main()
