"""The OpenAPI document is complete enough for Swagger UI and code generators."""

from __future__ import annotations

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local"])


async def test_every_route_has_an_operation_id_responses_and_the_bearer_scheme(api: Api) -> None:
    document = (await api.app_client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())

    operation_ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), (method, path)
            if path.startswith("/v1/"):
                assert operation.get("security"), (method, path)
                assert "401" in responses, (method, path)
                problem = responses["401"]["content"]
                assert "application/problem+json" in problem, (method, path)
    assert len(operation_ids) == len(set(operation_ids))
    assert "request_upload_url" in operation_ids
    assert not any(path.startswith("/v1/storage") for path in document["paths"])


async def test_swagger_ui_is_served(api: Api) -> None:
    response = await api.app_client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.app_client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.app_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "storage": "ok"}
    metrics = await api.app_client.get("/metrics")
    assert "uploadsvc_uploads_confirmed_total" in metrics.text
