"""Bad tokens answer 401 problem+json through the API, never 500."""

from __future__ import annotations

import time

import pytest

from tests.conftest import TEST_JWT_SECRET, Api
from tests.support import tokens

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local"])


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("Basic YWxpY2U6c2VjcmV0", "invalid_token"),
        ("Bearer", "invalid_token"),
        ("Bearer not-a-jwt", "invalid_token"),
        (
            "Bearer " + tokens.hand_built({"alg": "none", "typ": "JWT"}, tokens.claims()),
            "unsupported_algorithm",
        ),
        ("Bearer " + tokens.hs256(TEST_JWT_SECRET, exp=int(time.time()) - 3600), "token_expired"),
        ("Bearer " + tokens.hs256(TEST_JWT_SECRET, sub=None), "invalid_claims"),
        ("Bearer " + tokens.hs256(TEST_JWT_SECRET, exp=None), "invalid_claims"),
        ("Bearer " + tokens.hs256("some other secret"), "invalid_token"),
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
async def test_bad_tokens_answer_401(api: Api, authorization: str | None, code: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await api.app_client.get("/v1/files", headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    problem = response.json()
    assert problem["status"] == 401
    assert problem["code"] == code


async def test_open_event_jwt_prefix_is_accepted(api: Api) -> None:
    token = tokens.hs256(TEST_JWT_SECRET)
    response = await api.app_client.get("/v1/files", headers={"Authorization": f"JWT {token}"})
    assert response.status_code == 200
