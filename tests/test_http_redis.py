"""The HTTP path against a Redis that wants a password, and over TLS (``rediss://``).

The client, the gateway and its worker instances all connect with the same URL. The password
and the secret reach instances on standard input only: never on a command line, never in their
environment.

The redis-server bundled here is built without TLS (``--tls-port`` is an unknown directive), so
the ``rediss://`` test puts a TLS-terminating proxy with a self-signed certificate (made with
``cryptography``) in front of a password-protected server, the way managed Redis services are
often reached; every connection of client, gateway and instances goes through real TLS.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import pathlib
import ssl
import threading
from collections.abc import Iterator
from urllib.parse import quote

import dask
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import daskless
from daskless.exceptions import StoreError
from daskless.worker_runtime.gateway import Gateway, GatewaySettings
from daskless.worker_runtime.http_worker import HttpWorker, WorkerSettings
from daskless.worker_runtime.redis_server import RedisServer, free_port
from tests.http_servers import SECRET, serving

PASSWORD = "p@ss word/1"


@pytest.fixture(scope="module")
def protected() -> Iterator[RedisServer]:
    with RedisServer(port=free_port(), password=PASSWORD) as server:
        yield server


def self_signed(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_url(protected: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``rediss://`` URL: TLS on a proxy port, relayed to the protected server."""
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    assert protected.port is not None
    backend_port = protected.port

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(
        asyncio.start_server(relay, "127.0.0.1", 0, ssl=context), loop
    ).result(10)
    port = server.sockets[0].getsockname()[1]
    yield (f"rediss://:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/0"
           f"?ssl_ca_certs={quote(str(cert), safe='')}&ssl_cert_reqs=required")

    async def close() -> None:  # on the loop's own thread: asyncio objects are not thread-safe
        server.close()
        await server.wait_closed()

    asyncio.run_coroutine_threadsafe(close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _compute_through_gateway(store_url: str) -> tuple[int, list[int]]:
    server = Gateway(GatewaySettings(store=store_url, secret=SECRET, max_instances=2))
    graph = {f"a{i}": (sum, [i, 1]) for i in range(16)}
    graph["total"] = (sum, [f"a{i}" for i in range(16)])
    with serving(server) as url, dask.config.set({"daskless.auth.secret": SECRET}), \
            daskless.Engine(store=store_url, invoker=url, workers=2) as engine:
        result = engine.get(graph, "total")
        pids = [i.proc.pid for i in server.instances]
        for pid in pids:
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes()
            for text in (PASSWORD.encode(), quote(PASSWORD, safe="").encode(), SECRET.encode()):
                assert text not in cmdline and text not in environ
    return int(result), pids


def test_password_protected_redis_end_to_end(protected: RedisServer) -> None:
    result, pids = _compute_through_gateway(protected.url)
    assert result == sum(range(1, 17)) and pids


def test_wrong_password_is_refused_with_the_url_masked(protected: RedisServer) -> None:
    wrong = protected.url.replace(quote(PASSWORD, safe=""), "wrong")
    with pytest.raises(StoreError) as info:
        HttpWorker(WorkerSettings(store=wrong, secret=SECRET))
    assert ":***@" in str(info.value) and ":wrong@" not in str(info.value)


def test_tls_redis_end_to_end(tls_url: str) -> None:
    result, pids = _compute_through_gateway(tls_url)
    assert result == sum(range(1, 17)) and pids


def test_tls_with_an_untrusted_certificate_is_refused(tls_url: str) -> None:
    untrusted = tls_url.split("?")[0] + "?ssl_cert_reqs=required"
    with pytest.raises(StoreError):
        HttpWorker(WorkerSettings(store=untrusted, secret=SECRET))
