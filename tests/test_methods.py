"""A method a path does not take is a 405 problem whose ``Allow`` lists every one it does."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local"])

METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH"}


def _concrete(path: str) -> str:
    """The path template with a plausible value in each parameter."""
    values = {"partNumber": "1", "key": "uploads/a.txt", "name": "app.js"}
    return re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), str(uuid.uuid4())), path)


async def test_every_path_answers_405_with_all_its_methods(api: Api) -> None:
    document = (await api.app_client.get("/openapi.json")).json()
    wrong: list[tuple[str, str, int, str | None]] = []
    for template, operations in document["paths"].items():
        documented = {method.upper() for method in operations}
        path = _concrete(template)
        for method in sorted(METHODS - documented):
            response = await api.app_client.request(method, path, headers=api.headers())
            allow = response.headers.get("allow")
            if (
                response.status_code != 405
                or response.headers["content-type"] != "application/problem+json"
                or set((allow or "").split(", ")) != documented
            ):
                wrong.append((method, template, response.status_code, allow))
    assert wrong == []


async def test_a_literal_segment_is_not_taken_for_an_id(api: Api) -> None:
    response = await api.app_client.delete("/v1/uploads/confirm", headers=api.headers())
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    assert response.json()["code"] == "method_not_allowed"
    infected = await api.app_client.delete("/v1/files/infected", headers=api.headers())
    assert infected.status_code == 405, infected.text
    assert infected.headers["allow"] == "GET"
