"""DKIM signatures made in worker processes, beside the sender's event loop.

An RSA-2048 signature costs ~0.26 ms of CPU (``cryptography``/OpenSSL), more than everything
else the sender does for a message. In threads of the sending process the signatures ran in
parallel (OpenSSL releases the GIL) but each one handed the GIL back and forth with the event
loop, which cost ~90 us a message more. Here they run in child processes
(``python -m newsletter.delivery.signing``), a chunk of messages per job, over their stdin/stdout:
the sending process writes the bytes to sign (~1 KB each) and reads the base64 signatures back,
all through the event loop (no extra thread, no pickling).

Frames are a 4-byte big-endian length and a payload. The first frame a worker reads is the key
(PKCS#8 PEM): it reaches the worker through the pipe, never a file, an argument or a log.
A job is items joined by frames; the answer is the signatures joined by newlines.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import sys
from collections import deque
from typing import BinaryIO

from newsletter.errors import SigningError

_LENGTH = struct.Struct(">I")


def _frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    return stream.read(_LENGTH.unpack(head)[0])


def _serve(stdin: BinaryIO, stdout: BinaryIO) -> int:
    """The worker: read the key, then sign job after job until stdin closes."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    pem = _read_frame(stdin)
    if not pem:
        return 1
    key = serialization.load_pem_private_key(pem, password=None)
    pad, digest = padding.PKCS1v15(), hashes.SHA256()
    while (job := _read_frame(stdin)) is not None:
        items, pos = [], 0
        while pos < len(job):
            (size,) = _LENGTH.unpack_from(job, pos)
            items.append(job[pos + 4 : pos + 4 + size])
            pos += 4 + size
        signatures = [base64.b64encode(key.sign(d, pad, digest)) for d in items]  # type: ignore[union-attr, call-arg, arg-type]
        stdout.write(_frame(b"\n".join(signatures)))
        stdout.flush()
    return 0


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.waiting: deque[asyncio.Future[list[str]]] = deque()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        stdout = self.process.stdout
        try:
            while stdout is not None:
                head = await stdout.readexactly(_LENGTH.size)
                payload = await stdout.readexactly(_LENGTH.unpack(head)[0])
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(payload.decode("ascii").split("\n") if payload else [])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(SigningError("a DKIM signing process exited"))


class SigningProcesses:
    """A few signing processes; :meth:`submit` hands each job to the next one in turn."""

    def __init__(self, pem: bytes, processes: int = 2) -> None:
        self._pem = pem
        self._count = processes
        self._workers: list[_Worker] = []
        self._turn = 0

    async def start(self) -> None:
        for _ in range(self._count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "newsletter.delivery.signing",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            if process.stdin is None:  # pragma: no cover - PIPE always gives one
                raise SigningError("cannot talk to a DKIM signing process")
            process.stdin.write(_frame(self._pem))
            self._workers.append(_Worker(process))

    def submit(self, chunk: list[bytes]) -> asyncio.Future[list[str]]:
        worker = self._workers[self._turn % len(self._workers)]
        self._turn += 1
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        stdin = worker.process.stdin
        if stdin is None or stdin.is_closing() or worker.reader.done():
            future.set_exception(SigningError("a DKIM signing process exited"))
            return future
        worker.waiting.append(future)
        stdin.write(_frame(b"".join(_frame(item) for item in chunk)))
        return future

    async def close(self) -> None:
        for worker in self._workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 10)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
            await worker.reader
        self._workers = []


if __name__ == "__main__":
    sys.exit(_serve(sys.stdin.buffer, sys.stdout.buffer))
