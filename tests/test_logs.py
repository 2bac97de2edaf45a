"""Log lines: JSON, a request id on each line of a request, and never a secret."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests import samples
from tests.conftest import make_settings
from tests.service_process import log_lines, served
from uploadsvc import logs
from uploadsvc.security import mint_token

SIGV4_PUT = (
    "https://bucket.s3.amazonaws.com/uploads/alice/2026/01/01/x.txt"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE123%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=content-type%3Bhost"
    "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLESESSION"
    "&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
SECRETS = (
    "AKIAEXAMPLE123",
    "FwoGZXIvYXdzEXAMPLESESSION",
    "0123456789abcdef0123456789abcdef",
    "c2lnbmF0dXJlLW9mLXRoZS10b2tlbg",
    "hunter2",
    "bG9jYWwtc2lnbmF0dXJl",
    "eyJleHBpcmF0aW9uIjoiMjAyNiJ9",
)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"PUT {SIGV4_PUT}", ["/uploads/alice/2026/01/01/x.txt", "X-Amz-Expires=900"]),
        (
            "http://127.0.0.1:8000/v1/storage/objects/a.txt?X-Method=PUT&X-Expires=1767225600"
            "&X-Signature=bG9jYWwtc2lnbmF0dXJl",
            ["X-Method=PUT", "X-Signature=[REDACTED]"],
        ),
        (f"Authorization: Bearer {JWT}", ["Authorization: Bearer [REDACTED]"]),
        (f"Authorization: JWT {JWT}", ["Authorization: JWT [REDACTED]"]),
        ("database postgresql+asyncpg://uploadsvc:hunter2@db:5432/x", ["uploadsvc:[REDACTED]@db"]),
        (
            str(
                {
                    "key": "a.txt",
                    "policy": "eyJleHBpcmF0aW9uIjoiMjAyNiJ9",
                    "x-amz-signature": "0123456789abcdef0123456789abcdef",
                }
            ),
            ["'key': 'a.txt'", "'policy': '[REDACTED]'"],
        ),
        ("policy=eyJleHBpcmF0aW9uIjoiMjAyNiJ9&key=a.txt", ["key=a.txt"]),
    ],
)
def test_redaction_keeps_the_shape_and_drops_the_secret(text: str, kept: list[str]) -> None:
    redacted = logs.redact_text(text)
    assert not [secret for secret in SECRETS if secret in redacted], redacted
    for part in kept:
        assert part in redacted


def test_plain_words_near_secret_names_are_left_alone() -> None:
    text = "storage: Block Public Access on; bucket policy: none; JWT verification failed"
    assert logs.redact_text(text) == text


def test_fields_named_like_secrets_are_redacted_whole() -> None:
    fields = {"token": "anything", "headers": {"Authorization": "x", "Content-Type": "text/plain"}}
    assert logs.redact(fields) == {
        "token": "[REDACTED]",
        "headers": {"Authorization": "[REDACTED]", "Content-Type": "text/plain"},
    }


def _record(message: str, *args: object, exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord(
        "uploadsvc.test", logging.WARNING, __file__, 1, message, args, exc_info
    )


def test_a_stdlib_line_is_one_json_object_and_its_traceback_is_redacted() -> None:
    try:
        raise ValueError(f"refused {SIGV4_PUT}")
    except ValueError:
        record = _record("upload %s failed", "x.txt", exc_info=sys.exc_info())
    line = logs.formatter("json").format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["event"] == "upload x.txt failed"
    assert (parsed["level"], parsed["logger"]) == ("warning", "uploadsvc.test")
    assert "ValueError" in parsed["exception"]
    assert "X-Amz-Signature=[REDACTED]" in parsed["exception"]
    assert not [secret for secret in SECRETS if secret in line]


def test_the_console_format_is_readable_and_redacted_too() -> None:
    line = logs.formatter("console").format(_record("PUT %s", SIGV4_PUT))
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert "warning" in line
    assert "PUT https://bucket.s3.amazonaws.com/uploads/alice/" in line
    assert not [secret for secret in SECRETS if secret in line]


def test_a_whole_flow_logs_json_lines_with_request_ids_and_no_secret(tmp_path: Path) -> None:
    """request-url → PUT → confirm → download, and a rejected confirm, against
    a real ``uploadsvc serve`` (local backend): its stdout, line by line."""
    sent: dict[str, httpx.Response] = {}
    with served(tmp_path) as (service, _):
        # The served process has the same JWT secret as the test settings.
        token = mint_token(make_settings("sqlite-local", tmp_path=tmp_path), sub="alice")
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=service.base_url, timeout=30) as client:

            def call(request_id: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
                headers = {**kwargs.pop("headers", {}), "X-Request-ID": request_id}
                response = client.request(method, url, headers=headers, **kwargs)
                sent[request_id] = response
                return response

            body = b"hello from the log test\n" * 10
            fields = {"filename": "hello.txt", "content_type": "text/plain", "size": len(body)}
            grant = call("flow-grant", "POST", "/v1/uploads/request-url", json=fields, headers=auth)
            assert grant.status_code == 201, grant.text
            put = call(
                "flow-put",
                "PUT",
                grant.json()["upload_url"],
                content=body,
                headers=grant.json()["headers"],
            )
            assert put.status_code == 200, put.text
            file_key = {"file_key": grant.json()["file_key"]}
            confirmed = call(
                "flow-confirm",
                "POST",
                "/v1/uploads/confirm",
                json=file_key,
                # Open Event clients' scheme: its token must not show either.
                headers={"Authorization": f"JWT {token}"},
            )
            assert confirmed.status_code == 200, confirmed.text
            link = call(
                "flow-link",
                "GET",
                f"/v1/files/{confirmed.json()['file_id']}/download",
                headers=auth,
            )
            assert link.status_code == 200, link.text
            download = call("flow-download", "GET", link.json()["download_url"])
            assert download.content == body

            html = samples.HTML
            fake = {"filename": "x.png", "content_type": "image/png", "size": len(html)}
            bad = call("flow-bad-grant", "POST", "/v1/uploads/request-url", json=fake, headers=auth)
            assert bad.status_code == 201, bad.text
            bad_put = call(
                "flow-bad-put",
                "PUT",
                bad.json()["upload_url"],
                content=html,
                headers=bad.json()["headers"],
            )
            assert bad_put.status_code == 200, bad_put.text
            rejected = call(
                "flow-reject",
                "POST",
                "/v1/uploads/confirm",
                json={"file_key": bad.json()["file_key"]},
                headers=auth,
            )
            assert rejected.status_code == 422, rejected.text
            # A client pasting a presigned query onto an API URL: the access line shows it redacted.
            call("flow-pasted", "GET", "/healthz?" + urlsplit(SIGV4_PUT).query)
            no_id = client.get("/healthz")
    text = service.log_path.read_text()
    lines = log_lines(service)

    for request_id, response in sent.items():
        assert response.headers["x-request-id"] == request_id
        access = [line for line in lines if line.get("logger") == "uploadsvc.access"]
        assert [line["request_id"] for line in access].count(request_id) == 1, request_id
    generated = no_id.headers["x-request-id"]
    assert any(line.get("request_id") == generated for line in lines)
    # A line written inside a request, by the service, carries that request's context.
    rejection = next(line for line in lines if str(line["event"]).startswith("rejected upload"))
    assert rejection["request_id"] == "flow-reject"
    assert rejection["route"] == "/v1/uploads/confirm"
    for line in lines:
        if line.get("request_id") in sent:
            assert line["route"], line
    put_line = next(line for line in lines if line.get("request_id") == "flow-put")
    assert put_line["path"].startswith("/v1/storage/")
    assert "X-Signature=[REDACTED]" in put_line["path"]
    assert not any(line.get("logger") == "uvicorn.access" for line in lines)

    assert token not in text
    assert token.rsplit(".", 1)[1] not in text
    signatures = [
        value
        for response in (grant, bad, link)
        for url in (response.json().get("upload_url"), response.json().get("download_url"))
        if url
        for name, values_ in parse_qs(urlsplit(url).query).items()
        if name.lower() in {"x-signature", "x-amz-signature"}
        for value in values_
    ]
    assert len(signatures) == 3
    for signature in [*signatures, "0123456789abcdef0123456789abcdef", "AKIAEXAMPLE123"]:
        assert signature not in text
