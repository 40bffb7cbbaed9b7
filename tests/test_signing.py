"""DKIM signing processes: real child processes, signatures checked against the public key."""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.delivery.signing import MAX_RESTARTS, SigningProcesses
from newsletter.errors import SigningError


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_signatures_from_the_workers_verify_and_come_back_in_order(key: rsa.RSAPrivateKey) -> None:
    chunks = [[f"message {i}.{j}".encode() * 40 for j in range(5)] for i in range(7)]

    async def go() -> list[list[str]]:
        pool = SigningProcesses(_pem(key), processes=2)
        await pool.start()
        try:
            return list(await asyncio.gather(*(pool.submit(c) for c in chunks)))
        finally:
            await pool.close()

    results = asyncio.run(go())
    public = key.public_key()
    for chunk, signatures in zip(chunks, results, strict=True):
        assert len(signatures) == len(chunk)
        for data, signature in zip(chunk, signatures, strict=True):
            public.verify(base64.b64decode(signature), data, padding.PKCS1v15(), hashes.SHA256())


def test_a_killed_signing_process_is_replaced_and_its_jobs_signed_again(
    key: rsa.RSAPrivateKey,
) -> None:
    chunks = [[f"job {j} item {i}".encode() * 20 for i in range(16)] for j in range(40)]

    async def go() -> tuple[list[list[str]], int, int]:
        pool = SigningProcesses(_pem(key), processes=1)
        await pool.start()
        try:
            first = pool._workers[0].process
            futures = [pool.submit(c) for c in chunks]  # queued on the one process
            first.kill()  # with most of them still unanswered
            results = await asyncio.wait_for(asyncio.gather(*futures), 30)
            return list(results), pool.restarts, first.pid
        finally:
            await pool.close()

    results, restarts, _ = asyncio.run(go())
    assert restarts == 1
    public = key.public_key()
    for chunk, signatures in zip(chunks, results, strict=True):
        assert len(signatures) == len(chunk)
        for data, signature in zip(chunk, signatures, strict=True):
            public.verify(base64.b64decode(signature), data, padding.PKCS1v15(), hashes.SHA256())


def test_processes_that_keep_dying_fail_the_jobs_instead_of_hanging(key: rsa.RSAPrivateKey) -> None:
    async def go() -> None:
        pool = SigningProcesses(_pem(key), processes=1)
        await pool.start()
        try:
            for _ in range(MAX_RESTARTS + 1):
                process = pool._workers[0].process
                process.kill()
                await process.wait()

                async def replaced(old: asyncio.subprocess.Process = process) -> None:
                    while pool._workers[0].process is old and not pool._broken:
                        await asyncio.sleep(0.01)

                await asyncio.wait_for(replaced(), 10)
            with pytest.raises(SigningError, match="keep exiting"):
                await asyncio.wait_for(pool.submit([b"second"]), 10)
        finally:
            await pool.close()

    asyncio.run(go())
