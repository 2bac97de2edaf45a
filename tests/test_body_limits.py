"""Request bodies are bounded before they cost memory (docs/api.md, "Security bounds").

Against a real ``uploadsvc serve`` (uvicorn, production settings): large
bodies, chunked and with an honest Content-Length, with and without a
token, to every route that takes JSON and to the Open Event image route.
Each answer must come before the body was taken (the client cannot send
it all: the server stops reading and closes), and the server's peak RSS
(``VmHWM`` in /proc, reset before each test) must stay within 16 MiB of
where it was.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import samples
from tests.conftest import TEST_JWT_SECRET, TEST_SIGNING_SECRET
from tests.support.servers import (
    ServerProcess,
    free_loopback_port,
    run_cli,
    start_uploadsvc,
    uploadsvc_env,
)
from uploadsvc.config import Settings
from uploadsvc.security import mint_token

MiB = 1024 * 1024
BIG = 1024 * MiB  # the 1 GiB of docs/api.md; never sent whole (the server stops reading)
# What a client can push into socket buffers before a server that stopped
# reading blocks it; far below BIG, far above the bounds.
UNREAD_SLACK = 32 * MiB
RSS_GROWTH = 16 * MiB
# A hang bound, not a timing assertion.
ANSWER_TIMEOUT = 60.0
# docs/api.md's bound on a refusal; they take milliseconds.
ANSWERED_WITHIN = 1.0

UPLOAD_ID = uuid.UUID(int=1)
JSON_ROUTES = [
    "/v1/uploads/request-url",
    "/v1/uploads/confirm",
    "/v1/uploads/multipart",
    f"/v1/uploads/{UPLOAD_ID}/parts/urls",
    f"/v1/uploads/{UPLOAD_ID}/complete",
    "/v1/s3/multipart",
    "/v1/s3/multipart/some-upload-id/complete?key=uploads/x",
    "/v1/events/import",
]


@dataclass
class Server:
    service: ServerProcess
    settings: Settings
    port: int

    @property
    def pid(self) -> int:
        return self.service.pid

    def token(self, user: str = "alice") -> str:
        return mint_token(self.settings, sub=user)

    def status(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def reset_peak(self) -> int:
        """Reset VmHWM to the current RSS (Linux clear_refs 5); returns that RSS."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return self.status("VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("body-limits")
    port = free_loopback_port()
    values = {
        # As deployed: production, real secrets, nothing from the development defaults.
        "env": "production",
        "jwt_secret": TEST_JWT_SECRET,
        "signing_secret": TEST_SIGNING_SECRET,
        "database_url": f"sqlite+aiosqlite:///{workdir / 'uploadsvc.db'}",
        "local_storage_dir": str(workdir / "storage"),
        "max_image_bytes": str(12 * MiB),
        "public_base_url": f"http://127.0.0.1:{port}",
    }
    env = uploadsvc_env(values)
    run_cli(["migrate"], env=env, cwd=workdir)
    run_cli(["storage", "init"], env=env, cwd=workdir)
    service = start_uploadsvc("serve", port=port, env=env, workdir=workdir)
    try:
        yield Server(service, Settings(_env_file=None, **values), port)  # type: ignore[arg-type]
    finally:
        service.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client managed to hand to its socket
    seconds: float  # from the request's first byte to its answer

    def json(self) -> dict[str, object]:
        parsed: dict[str, object] = json.loads(self.body)
        return parsed


async def send_big(
    server: Server,
    path: str,
    *,
    total: int,
    chunked: bool,
    token: str | None,
    start: bytes = b'{"file_key": "',
    filler: bytes = b"a",
) -> Answer:
    """POST a ``total``-byte body while waiting for the answer; the answer and what was sent.

    A plain socket rather than asyncio streams: when the server closes on a
    body it did not read, the client's next write fails (reset), and a
    stream transport would then close before reading the answer already
    waiting in the socket.
    """
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    sent = 0
    block = filler * (MiB // len(filler))

    async def pump() -> None:
        nonlocal sent
        await loop.sock_sendall(sock, ("\r\n".join(head) + "\r\n\r\n").encode())
        while sent < total:
            piece = (start + block)[:MiB] if sent == 0 else block
            piece = piece[: total - sent]
            await loop.sock_sendall(
                sock, b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
            )
            sent += len(piece)
        if chunked:
            await loop.sock_sendall(sock, b"0\r\n\r\n")

    started = loop.time()
    pumping = asyncio.create_task(pump())
    try:
        status, headers, body = await asyncio.wait_for(_read_answer(loop, sock), ANSWER_TIMEOUT)
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await pumping
        sock.close()
    return Answer(status, headers, body, sent, loop.time() - started)


async def _read_answer(
    loop: asyncio.AbstractEventLoop, sock: socket.socket
) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        received = await loop.sock_recv(sock, 65536)
        if not received:
            raise AssertionError(f"the connection closed before an answer: {data!r}")
        data += received
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        received = await loop.sock_recv(sock, 65536)
        if not received:
            break
        body += received
    return int(status_line.split()[1]), headers, body[:length]


def _assert_refused_unread(answer: Answer, status: int, code: str | None = None) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/problem+json"
    if code is not None:
        assert answer.json()["code"] == code, answer.body
    # The server stopped reading: the client could not hand it the body.
    assert answer.sent <= UNREAD_SLACK, answer.sent
    assert answer.headers.get("connection") == "close"
    # Within a second of the bound (passed at once, or after 64 KiB): a hang bound.
    assert answer.seconds < ANSWERED_WITHIN, answer.seconds


@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_a_large_json_body_is_refused_before_it_is_read(server: Server, path: str) -> None:
    token = server.token()
    # Warm up the code paths (first imports, allocator arenas) before measuring.
    for chunked in (False, True):
        await send_big(server, path, total=2 * MiB, chunked=chunked, token=token)
    before = server.reset_peak()

    honest = await send_big(server, path, total=BIG, chunked=False, token=token)
    _assert_refused_unread(honest, 413, "too_large")
    honest_anonymous = await send_big(server, path, total=BIG, chunked=False, token=None)
    _assert_refused_unread(honest_anonymous, 413, "too_large")
    cut = await send_big(server, path, total=BIG, chunked=True, token=token)
    _assert_refused_unread(cut, 413, "too_large")
    # No token: 401 before a byte of the body is read.
    anonymous = await send_big(server, path, total=BIG, chunked=True, token=None)
    _assert_refused_unread(anonymous, 401, "missing_token")
    forged = await send_big(server, path, total=BIG, chunked=True, token="not.a.token")
    _assert_refused_unread(forged, 401, "invalid_token")

    assert server.status("VmHWM") - before <= RSS_GROWTH


async def test_a_route_without_a_body_answers_without_reading_one(server: Server) -> None:
    path = f"/v1/uploads/{UPLOAD_ID}/confirm"
    token = server.token()
    await send_big(server, path, total=2 * MiB, chunked=True, token=token)
    before = server.reset_peak()
    for chunked in (False, True):
        anonymous = await send_big(server, path, total=BIG, chunked=chunked, token=None)
        _assert_refused_unread(anonymous, 401, "missing_token")
        # The route takes no body: with a token it answers as it always does.
        unknown = await send_big(server, path, total=BIG, chunked=chunked, token=token)
        _assert_refused_unread(unknown, 404, "upload_not_found")
    assert server.status("VmHWM") - before <= RSS_GROWTH


async def test_json_bodies_within_the_bound_still_work(server: Server) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        headers = {"Authorization": f"Bearer {server.token()}"}
        body = {"filename": "a.txt", "content_type": "text/plain", "size": 5}
        granted = await client.post("/v1/uploads/request-url", json=body, headers=headers)
        assert granted.status_code == 201, granted.text
        # A part list of 1,000 parts is over 64 KiB: it has a bound of its own.
        parts = [{"part_number": n, "etag": f'"{uuid.uuid4().hex}"'} for n in range(1, 1001)]
        content = json.dumps({"parts": parts}).encode()
        assert len(content) > 64 * 1024
        completed = await client.post(
            f"/v1/uploads/{UPLOAD_ID}/complete",
            content=content,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert completed.status_code == 404, completed.text  # read, parsed, then not found
        anonymous = await client.post("/v1/uploads/request-url", json=body)
        assert anonymous.status_code == 401
        assert anonymous.json()["code"] == "missing_token"


# --- POST /v1/upload/image -------------------------------------------------------------


def _image_start(declared: str = "image/png") -> bytes:
    return b'{"data": "data:' + declared.encode() + b";base64,"


async def test_a_large_non_image_is_refused_on_its_first_block(server: Server) -> None:
    path = "/v1/upload/image"
    token = server.token()
    html = base64.b64encode(samples.HTML * 3)[:96]  # a multiple of 4: decodes to HTML
    await send_big(
        server, path, total=2 * MiB, chunked=True, token=token, start=_image_start(), filler=html
    )
    before = server.reset_peak()

    # 128 MiB: chunked, so only the bytes tell; HTML is refused on the first block.
    sneaked = await send_big(
        server, path, total=128 * MiB, chunked=True, token=token, start=_image_start(), filler=html
    )
    _assert_refused_unread(sneaked, 422, "type_mismatch")
    honest = await send_big(
        server, path, total=128 * MiB, chunked=False, token=token, start=_image_start()
    )
    _assert_refused_unread(honest, 413, "too_large")
    anonymous = await send_big(
        server, path, total=128 * MiB, chunked=True, token=None, start=_image_start()
    )
    _assert_refused_unread(anonymous, 401, "missing_token")
    assert server.status("VmHWM") - before <= RSS_GROWTH


async def test_a_large_image_streams_into_storage(server: Server) -> None:
    # Just under the 12 MiB image bound of this server: about 16 MiB of base64.
    image = samples.png() + bytes(11 * MiB)
    body = b'{"data": "data:image/png;base64,' + base64.b64encode(image) + b'"}'
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as client:
        headers = {"Authorization": f"Bearer {server.token()}", "Content-Type": "application/json"}
        warm = b'{"data": "data:image/png;base64,' + base64.b64encode(samples.png()) + b'"}'
        assert (await client.post("/v1/upload/image", content=warm, headers=headers)).is_success
        before = server.reset_peak()
        stored = await client.post("/v1/upload/image", content=body, headers=headers)
        assert stored.status_code == 200, stored.text
        assert server.status("VmHWM") - before <= RSS_GROWTH
        downloaded = await client.get(stored.json()["url"])
        assert downloaded.content == image
        assert 'filename="image.png"' in downloaded.headers["content-disposition"]

        over = b'{"data": "data:image/png;base64,' + base64.b64encode(image + bytes(MiB)) + b'"}'

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(over), 64 * 1024):
                yield over[i : i + 64 * 1024]

        refused = await client.post("/v1/upload/image", content=chunks(), headers=headers)
        assert refused.status_code == 413, refused.text
        assert refused.json()["code"] == "too_large"
