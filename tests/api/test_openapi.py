"""Every endpoint is in the OpenAPI document with its request, its answer, its error codes,
and who may call it; every string and list a request can carry has a bound there."""

import re

import pytest

VALUE_MOVING = {
    ("post", "/v1/cards/{card_id}/top-ups"),
    ("post", "/v1/cards/{card_id}/transfers"),
    ("post", "/v1/cards/{card_id}/report-lost"),
    ("post", "/v1/sales"),
    ("post", "/v1/sales/{sale_id}/refunds"),
    # A shift moves no money, but the till's count of its drawer must be said once.
    ("post", "/v1/pos/shifts"),
    ("post", "/v1/pos/shifts/{shift_id}/close"),
}


@pytest.fixture(scope="module")
def spec(app):
    return app.test_client().get("/openapi.json").json


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method, path, operation


def test_the_document_lists_every_api_route(app, spec):
    documented = {(m, p) for m, p, _ in operations(spec)}
    routed = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routed.add((method.lower(), path))
    assert routed == documented


def test_every_operation_has_a_summary_an_answer_and_says_who_may_call_it(spec):
    for method, path, operation in operations(spec):
        assert operation.get("summary"), (method, path)
        successes = [code for code in operation["responses"] if code.startswith("2")]
        assert len(successes) >= 1, (method, path)
        if "security" in operation:
            assert "Who may call:" in operation.get("description", ""), (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def resolve(spec, response):
    if "$ref" in response:
        return spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    return response


def test_every_body_taking_operation_documents_its_request_and_a_422(spec):
    for method, path, operation in operations(spec):
        if "requestBody" in operation:
            invalid = resolve(spec, operation["responses"]["422"])
            assert "`validation_error`" in invalid["description"], (method, path)
            assert invalid["content"]["application/json"]["schema"]


def test_every_json_body_taking_operation_documents_its_400_malformed_json(spec, client):
    for method, path, operation in operations(spec):
        if "requestBody" in operation:
            malformed = resolve(spec, operation["responses"]["400"])
            assert "`malformed_json`" in malformed["description"], (method, path)
            assert malformed["content"]["application/json"]["schema"]
    # What it documents is what the API answers.
    response = client.post("/v1/auth/signup", data="{", content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "malformed_json"


def test_error_answers_name_their_stable_codes(spec):
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert "`" in resolve(spec, response)["description"], (method, path, status)


def test_value_moving_operations_require_an_idempotency_key(spec):
    moving = set()
    for method, path, operation in operations(spec):
        headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
        if any(h["name"] == "Idempotency-Key" and h["required"] for h in headers):
            moving.add((method, path))
            assert "`idempotency_key_reused`" in operation["responses"]["409"]["description"]
    assert moving == VALUE_MOVING


def resolve_schema(spec, schema):
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_every_list_a_request_can_carry_has_a_most(spec):
    def lists(schema, where):
        schema = resolve_schema(spec, schema)
        if schema.get("type") == "array":
            yield where, schema
            yield from lists(schema["items"], where + "[]")
        for name, prop in schema.get("properties", {}).items():
            yield from lists(prop, f"{where}.{name}")

    found = []
    for method, path, operation in operations(spec):
        content = operation.get("requestBody", {}).get("content", {})
        for media in content.values():
            found += [(method, path, w, s) for w, s in lists(media["schema"], "body")]
    assert found, "no request lists seen: the walk is broken"
    for method, path, where, schema in found:
        assert "maxItems" in schema, (method, path, where)


def test_every_string_a_request_can_carry_has_a_longest(spec):
    # A string with no bound reaches a column of fixed length sooner or later.
    def strings(schema, where):
        schema = resolve_schema(spec, schema)
        if schema.get("type") == "array":
            yield from strings(schema["items"], where + "[]")
        if schema.get("type") == "string":
            yield where, schema
        for name, prop in schema.get("properties", {}).items():
            yield from strings(prop, f"{where}.{name}")

    found = []
    for method, path, operation in operations(spec):
        for media in operation.get("requestBody", {}).get("content", {}).values():
            found += [(method, path, w, s) for w, s in strings(media["schema"], "body")]
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and parameter["schema"].get("type") == "string":
                found += [(method, path, "query." + parameter["name"], parameter["schema"])]
    assert found, "no request strings seen: the walk is broken"
    for method, path, where, schema in found:
        bounded = {"maxLength", "enum", "pattern", "format"} & set(schema)
        assert bounded, (method, path, where)
