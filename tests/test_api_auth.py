"""Bad tokens answer 401 problem+json through the API, never 500."""

from __future__ import annotations

import base64
import json
import time

import pytest
from jose import jwt

from tests.conftest import TEST_JWT_SECRET, Api

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local"])


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**changes: object) -> dict[str, object]:
    claims: dict[str, object] = {"sub": "alice", "exp": int(time.time()) + 600}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer",
        "Bearer not-a-jwt",
        "Bearer " + _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + ".",
        "Bearer " + jwt.encode(_claims(exp=int(time.time()) - 3600), TEST_JWT_SECRET),
        "Bearer " + jwt.encode(_claims(sub=None), TEST_JWT_SECRET),
        "Bearer " + jwt.encode(_claims(exp=None), TEST_JWT_SECRET),
        "Bearer " + jwt.encode(_claims(), "some other secret"),
    ],
    ids=[
        "missing",
        "basic",
        "empty",
        "garbage",
        "alg-none",
        "expired",
        "no-sub",
        "no-exp",
        "forged",
    ],
)
async def test_bad_tokens_answer_401(api: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await api.app_client.get("/v1/files", headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    problem = response.json()
    assert problem["status"] == 401
    assert problem["code"]


async def test_open_event_jwt_prefix_is_accepted(api: Api) -> None:
    token = jwt.encode(_claims(), TEST_JWT_SECRET)
    response = await api.app_client.get("/v1/files", headers={"Authorization": f"JWT {token}"})
    assert response.status_code == 200
