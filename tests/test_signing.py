"""DKIM signing processes: real child processes, signatures checked against the public key."""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.delivery.signing import SigningProcesses
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


def test_a_dead_worker_fails_its_jobs_instead_of_hanging(key: rsa.RSAPrivateKey) -> None:
    async def go() -> None:
        pool = SigningProcesses(_pem(key), processes=1)
        await pool.start()
        try:
            assert len(await pool.submit([b"first"])) == 1
            pool._workers[0].process.kill()
            await pool._workers[0].process.wait()
            with pytest.raises(SigningError, match="signing process exited"):
                await asyncio.wait_for(pool.submit([b"second"]), 10)
        finally:
            await pool.close()

    asyncio.run(go())
