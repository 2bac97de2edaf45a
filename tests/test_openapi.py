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


async def test_errors_are_documented_as_the_problem_json_the_service_sends(api: Api) -> None:
    document = (await api.app_client.get("/openapi.json")).json()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")) and path.startswith("/v1/"):
                    # Only problem+json: a generated client reads the first listed type.
                    assert response["content"] == problem, (method, path, code)
            if path.startswith("/v1/") and (
                operation.get("parameters") or "requestBody" in operation
            ):
                assert "422" in operation["responses"], (method, path)
    schemas = document["components"]["schemas"]
    assert schemas["Problem"]["properties"]["code"]["type"] == "string"
    # FastAPI's default 422 body is not what the service sends.
    assert "HTTPValidationError" not in schemas


async def test_every_schema_reference_resolves_and_success_bodies_are_named(api: Api) -> None:
    document = (await api.app_client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [ref for value in node.values() for ref in refs(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in refs(value)]
        return []

    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                for media in response.get("content", {}).values():
                    if code.startswith("2"):
                        # One named schema per answer (or a list of one, as
                        # Uppy's part listing is): two object shapes in an
                        # anyOf cannot be told apart by a generated client.
                        schema = media["schema"]
                        if schema.get("type") == "array":
                            schema = schema["items"]
                        assert set(schema) == {"$ref"}, (method, path, code)


async def test_open_event_upload_answers_one_url_or_a_list(api: Api) -> None:
    document = (await api.app_client.get("/openapi.json")).json()
    answer = document["paths"]["/v1/upload/file"]["post"]["responses"]["200"]
    name = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    url = document["components"]["schemas"][name]["properties"]["url"]
    assert {"type": "string"} in url["anyOf"]
    assert {"type": "array", "items": {"type": "string"}} in url["anyOf"]
