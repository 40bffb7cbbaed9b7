"""DKIM signatures made in worker processes, beside the sender's event loop.

An RSA-2048 signature costs ~0.26 ms of CPU (``cryptography``/OpenSSL), more than everything
else the sender does for a message. In threads of the sending process the signatures ran in
parallel (OpenSSL releases the GIL) but each one handed the GIL back and forth with the event
loop, which cost ~90 us a message more. Here they run in child processes
(``python -m newsletter.delivery.signworker``), a chunk of messages per job, over their stdin/stdout:
the sending process writes the bytes to sign (~1 KB each) and reads the base64 signatures back,
all through the event loop (no extra thread, no pickling).

The framing, and the key's way to the worker (through the pipe only), are in
:mod:`newsletter.delivery.signworker`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
from collections import deque
from collections.abc import Callable

from newsletter.delivery.signworker import LENGTH, frame
from newsletter.errors import SigningError

log = logging.getLogger(__name__)


def default_processes() -> int:
    """A signing process for each core beyond the sending process's own, at least 1, at most 4
    (each signs ~3,900 messages/s). On 2 cores one: a second one measured no faster there and
    cost its start-up (~40 ms of CPU) again."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


MAX_RESTARTS = 5  # signing processes that may die during one send before it stops


class _Worker:
    """One signing process and the jobs it owes answers for (their payloads kept, so that the
    jobs of a process that dies can be signed again by its replacement)."""

    def __init__(
        self, process: asyncio.subprocess.Process, on_exit: Callable[[_Worker], None]
    ) -> None:
        self.process = process
        self.waiting: deque[tuple[asyncio.Future[list[str]], bytes]] = deque()
        self._on_exit = on_exit
        self.reader = asyncio.create_task(self._read())

    @property
    def alive(self) -> bool:
        stdin = self.process.stdin
        return stdin is not None and not stdin.is_closing() and not self.reader.done()

    def send(self, future: asyncio.Future[list[str]], payload: bytes) -> None:
        self.waiting.append((future, payload))
        if self.process.stdin is not None:
            self.process.stdin.write(frame(payload))

    async def _read(self) -> None:
        stdout = self.process.stdout
        try:
            while stdout is not None:
                head = await stdout.readexactly(LENGTH.size)
                payload = await stdout.readexactly(LENGTH.unpack(head)[0])
                future, _ = self.waiting.popleft()
                if not future.done():
                    future.set_result(payload.decode("ascii").split("\n") if payload else [])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self._on_exit(self)


class SigningProcesses:
    """A few signing processes; :meth:`submit` hands each job to the next live one in turn.

    Supervised: a process that exits (killed, crashed) is replaced and the jobs it had not
    answered go to the replacement, so no signature is lost. After :data:`MAX_RESTARTS`
    replacements in one send, or when a replacement cannot start, the waiting jobs fail with
    :class:`SigningError` (the send stops with that reason).
    """

    def __init__(self, pem: bytes, processes: int | None = None) -> None:
        self._pem = pem
        self._count = processes or default_processes()
        self._workers: list[_Worker] = []
        self._turn = 0
        self._closing = False
        self._broken = ""
        self.restarts = 0
        self._backlog: list[tuple[asyncio.Future[list[str]], bytes]] = []
        self._replacing: set[asyncio.Task[None]] = set()

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "newsletter.delivery.signworker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        if process.stdin is None:  # pragma: no cover - PIPE always gives one
            raise SigningError("cannot talk to a DKIM signing process")
        process.stdin.write(frame(self._pem))
        return _Worker(process, self._exited)

    async def start(self) -> None:
        for _ in range(self._count):
            self._workers.append(await self._spawn())

    def submit(self, chunk: list[bytes]) -> asyncio.Future[list[str]]:
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        payload = b"".join(frame(hashlib.sha256(item).digest()) for item in chunk)
        if self._broken:
            future.set_exception(SigningError(self._broken))
            return future
        live = [w for w in self._workers if w.alive]
        if not live:  # every process is being replaced: the first replacement takes it
            self._backlog.append((future, payload))
            return future
        live[self._turn % len(live)].send(future, payload)
        self._turn += 1
        return future

    def _exited(self, worker: _Worker) -> None:
        orphans = list(worker.waiting)
        worker.waiting.clear()
        if self._closing or self._broken:
            self._fail(orphans, self._broken or "a DKIM signing process exited")
            return
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            self._broken = f"DKIM signing processes keep exiting ({self.restarts} so far)"
            self._fail(orphans + self._backlog, self._broken)
            self._backlog = []
            return
        log.warning(
            "a DKIM signing process exited (code %s); starting another, %d job(s) to sign again",
            worker.process.returncode,
            len(orphans),
        )
        task = asyncio.create_task(self._replace(worker, orphans))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replace(
        self, worker: _Worker, orphans: list[tuple[asyncio.Future[list[str]], bytes]]
    ) -> None:
        try:
            new = await self._spawn()
        except (OSError, SigningError) as exc:
            self._broken = f"cannot start a DKIM signing process: {exc}"
            self._fail(orphans + self._backlog, self._broken)
            self._backlog = []
            return
        if worker in self._workers:
            self._workers[self._workers.index(worker)] = new
        else:  # pragma: no cover - every worker is in the list
            self._workers.append(new)
        await _reap(worker.process)
        pending, self._backlog = orphans + self._backlog, []
        for future, payload in pending:
            if not future.done():
                new.send(future, payload)

    @staticmethod
    def _fail(jobs: list[tuple[asyncio.Future[list[str]], bytes]], why: str) -> None:
        for future, _ in jobs:
            if not future.done():
                future.set_exception(SigningError(why))

    async def close(self) -> None:
        self._closing = True
        for task in list(self._replacing):
            task.cancel()
        for worker in self._workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in self._workers:
            await _reap(worker.process, 10)
            await worker.reader
        self._workers = []


async def _reap(process: asyncio.subprocess.Process, grace: float = 1.0) -> None:
    """Wait for a process to end; kill it after ``grace`` seconds."""
    try:
        async with asyncio.timeout(grace):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
