"""The OpenAPI document describes exactly the routes the ingest app serves."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from taskstream.services.ingest import openapi
from taskstream.services.ingest.app import ROUTES

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_spec_describes_every_route_and_nothing_else() -> None:
    # A route's path parameter may carry its pattern ({id:…}); the document names it {id}.
    served = {
        (method.lower(), re.sub(r"\{(\w+):.*?\}(?=/|$)", r"{\1}", path))
        for method, path, _ in ROUTES
    }
    described = {
        (method, path)
        for path, operations in openapi.spec()["paths"].items()
        for method in operations
        if method in HTTP_METHODS
    }
    assert described == served


def test_every_operation_has_responses() -> None:
    for path, operations in openapi.spec()["paths"].items():
        for method, operation in operations.items():
            assert operation.get("responses"), f"{method.upper()} {path} has no responses"


def test_every_ref_resolves_to_a_component() -> None:
    spec = openapi.spec()
    schemas = spec["components"]["schemas"]
    found = list(refs(spec))
    assert found, "the document should reference its component schemas"
    prefix = "#/components/schemas/"
    for ref in found:
        assert ref.startswith(prefix), ref
        assert ref.removeprefix(prefix) in schemas, f"dangling $ref {ref}"


def test_path_parameters_are_declared() -> None:
    for path, operations in openapi.spec()["paths"].items():
        if "{id}" not in path:
            continue
        for operation in operations.values():
            names = {(p["name"], p["in"]) for p in operation.get("parameters", [])}
            assert ("id", "path") in names, path


def test_spec_is_valid_json_with_an_openapi_version() -> None:
    spec = openapi.spec()
    assert json.loads(json.dumps(spec)) == spec
    assert spec["openapi"].startswith("3.")
