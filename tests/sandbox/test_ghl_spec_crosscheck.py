"""The simulator's hand-written request schemas and routes, checked against GHL's official OpenAPI files.

The sandbox refuses unknown properties with 422 the way GHL does, so a property set that drifts from
the spec would either hide a connector bug (too loose) or invent one (too strict).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from crm_mcp.providers.gohighlevel.sandbox.schemas import REQUEST_SCHEMAS
from crm_mcp.providers.gohighlevel.sandbox.simulator import CALENDARS_VERSION, CONTACTS_VERSION, GHLSandbox

SPECS = Path("/work/shared/specs/gohighlevel")
pytestmark = pytest.mark.skipif(not SPECS.is_dir(), reason=f"GoHighLevel OpenAPI files not found at {SPECS}")

TYPE_OF = {"string": "string", "boolean": "boolean", "array": "array", "number": "number", "object": "object"}


@cache
def spec(name: str) -> dict[str, Any]:
    return json.loads((SPECS / name).read_text())


def resolve(file: str, node: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Follow ``$ref`` (local or ``other.json#/...``) until a concrete schema."""
    while "$ref" in node:
        target, _, pointer = node["$ref"].partition("#")
        if target:
            file = Path(target).name
        node = spec(file)
        for part in pointer.strip("/").split("/"):
            node = node[part]
    return file, node


@pytest.mark.parametrize("name", sorted(n for n, s in REQUEST_SCHEMAS.items() if s.spec_file))
def test_request_schema_matches_spec(name: str) -> None:
    ours = REQUEST_SCHEMAS[name]
    assert ours.spec_file is not None
    _, theirs = resolve(ours.spec_file, {"$ref": f"#/components/schemas/{name}"})
    props = theirs.get("properties", {})
    assert set(ours.properties) == set(props), "allowed properties differ from the spec"
    assert set(ours.required) == set(theirs.get("required", []))
    for prop, kind in ours.properties.items():
        _, target = resolve(ours.spec_file, props[prop])
        declared = target.get("type") or ("object" if "properties" in target else None)
        if kind != "any" and declared is not None:
            assert TYPE_OF.get(declared) == kind, (
                f"{name}.{prop}: spec says {declared}, sandbox checks {kind}"
            )


def test_search_body_is_not_defined_by_the_spec() -> None:
    """SearchBodyV2DTO is empty in the spec; our keys come from GHL's docs, so make that explicit."""
    _, theirs = resolve("contacts.json", {"$ref": "#/components/schemas/SearchBodyV2DTO"})
    assert not theirs.get("properties")
    assert REQUEST_SCHEMAS["SearchBodyV2DTO"].spec_file is None


def test_every_route_exists_in_the_spec_with_our_version() -> None:
    files = {"contacts": "contacts.json", "locations": "locations.json", "calendars": "calendars.json"}
    for route in GHLSandbox()._api_routes:
        path = route.path
        if path in ("/contacts", "/calendars"):  # aliases without the trailing slash
            continue
        file = files[path.strip("/").split("/")[0]]
        ops = spec(file)["paths"].get(path)
        assert ops is not None, f"{path} not in {file}"
        for method in route.methods or ():
            if method == "HEAD":
                continue
            op = ops.get(method.lower())
            assert op is not None, f"{method} {path} not in {file}"
            version = next(p for p in op["parameters"] if p.get("name") == "Version")
            expected = CALENDARS_VERSION if file == "calendars.json" else CONTACTS_VERSION
            assert version["schema"]["enum"] == [expected], f"{method} {path}"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("post", "/contacts/", "201"),
        ("put", "/contacts/{contactId}", "200"),
        ("post", "/contacts/{contactId}/tags", "201"),
        ("delete", "/contacts/{contactId}/tags", "200"),
        ("post", "/contacts/{contactId}/notes", "201"),
        ("post", "/contacts/{contactId}/tasks", "201"),
        ("post", "/calendars/events/appointments", "200"),
        ("delete", "/calendars/events/{eventId}", "201"),
    ],
)
def test_success_codes_we_reproduce_are_the_specs(method: str, path: str, status: str) -> None:
    file = "calendars.json" if path.startswith("/calendars") else "contacts.json"
    responses = spec(file)["paths"][path][method]["responses"]
    assert min(code for code in responses if code.startswith("2")) == status


def test_misspelled_succeded_is_in_the_spec() -> None:
    _, schema = resolve("contacts.json", {"$ref": "#/components/schemas/DeleteContactsSuccessfulResponseDto"})
    assert "succeded" in schema["properties"]
    _, schema = resolve("calendars.json", {"$ref": "#/components/schemas/DeleteEventSuccessfulResponseDto"})
    assert "succeeded" in schema["properties"]
