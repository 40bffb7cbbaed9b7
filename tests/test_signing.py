"""DKIM signing processes: real child processes, signatures checked against the public key."""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from newsletter.delivery.dkim import canonical_body, canonical_header, canonical_pieces
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


_HEADER_BITS = ["a", "é", " ", "\t", "\x0b", "\x0c", "\x1c", "\x1f", "\r\n ", "\r\n\t"]


@given(st.lists(st.sampled_from(_HEADER_BITS), max_size=30))
def test_relaxed_header_canonicalisation_is_rfc6376_as_dkimpy_reads_it(bits: list[str]) -> None:
    """Only SP and HTAB are white space (RFC 6376, 3.4.2): a vertical tab, a form feed or an
    information separator stays; ``str.split()`` would have turned them into spaces. The value
    starts and ends with a letter, where dkimpy's strip() and the RFC agree."""
    from dkim.canonicalization import Relaxed

    value = " x" + "".join(bits) + "y "
    [(name, canon)] = Relaxed.canonicalize_headers([(b"Subject", value.encode())])
    assert canonical_header("Subject", value) == name + b":" + canon.removesuffix(b"\r\n")
    assert canonical_header("Subject", " a \x0b\tb ") == b"subject:a \x0b b"


_BODY_BITS = [b"a", b" ", b"\t", b"\r\n", b"x ", b" \r\n"]


@given(st.lists(st.lists(st.sampled_from(_BODY_BITS), max_size=8), min_size=1, max_size=5))
def test_canonical_pieces_joined_with_urls_are_the_canonical_body(bits: list[list[bytes]]) -> None:
    pieces = [b"".join(piece) for piece in bits]
    urls = [b"https://n.example/u/T" + bytes([65 + i]) for i in range(len(pieces) - 1)]
    whole = pieces[0] + b"".join(u + p for u, p in zip(urls, pieces[1:], strict=True))
    canon = canonical_pieces(pieces)
    joined = canon[0] + b"".join(u + p for u, p in zip(urls, canon[1:], strict=True))
    assert joined == canonical_body(whole)
