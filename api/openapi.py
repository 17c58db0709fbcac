"""``/openapi.json`` (OpenAPI 3.1) generated from the routes table and the pydantic models that
validate the requests, and ``/docs``, a self-contained page that renders it (no CDN)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import TypeAdapter

from .keys import SPEC
from .models import MAX_REPEATED, ProblemDetails

if TYPE_CHECKING:
    from .routes import Route

REF = "#/components/schemas/{model}"
PROBLEM = "application/problem+json"
_PATH_PARAM = re.compile(r"\{(\w+)\}")


class _Schemas:
    """Collects component schemas while the operations are described."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, annotation: Any, mode: str = "validation") -> dict[str, Any]:
        if annotation is str:
            return {"type": "string"}
        schema = TypeAdapter(annotation).json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
        self.components.update(schema.pop("$defs", {}))
        title = schema.get("title")
        if isinstance(annotation, type) and title and schema.get("type") == "object":
            self.components[title] = schema
            return {"$ref": REF.format(model=title)}
        return schema


def build(routes: tuple[Route, ...], *, channels: list[str] | None = None, version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the visible routes; ``channels`` (the configured channel names)
    become the allowed values of every ``channel`` input, so the document is exact for a deployment."""
    schemas = _Schemas()
    problem_ref = schemas.of(ProblemDetails, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.hidden:
            continue
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas, problem_ref)
    if channels:
        _restrict_channels(paths, schemas.components, sorted(channels))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Inventory availability (ATS) API", "version": version,
                 "description": "Available-to-sell per SKU and location, holds decided by the owning stream "
                                "worker, and event ingest. Errors are RFC 9457 problem+json."},
        "paths": paths,
        "components": {"schemas": schemas.components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "ATS_API_TOKENS: token=scope,scope;…"}}},
    }


def _operation(route: Route, schemas: _Schemas, problem_ref: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary,
                                 "operationId": f"{route.method.lower()}_{_slug(route.path)}"}
    parameters = [_parameter(param, schemas) for param in route.params]
    if parameters:
        operation["parameters"] = parameters
    responses: dict[str, Any] = {}
    for status, (annotation, description) in sorted(route.responses.items()):
        if annotation is None:
            content = {PROBLEM: {"schema": problem_ref}}
        elif annotation is str:
            content = {"text/plain": {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": schemas.of(annotation, "serialization")}}
        responses[str(status)] = {"description": description, "content": content}
    if route.body is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": schemas.of(route.body)}}}
        responses.setdefault("400", _problem("malformed JSON or an empty body", problem_ref))
        responses.setdefault("413", _problem("body over ATS_MAX_BODY_BYTES", problem_ref))
        responses.setdefault("422", _problem("a field breaks the rules; each is named", problem_ref))
    if _PATH_PARAM.search(route.path):
        responses.setdefault("404", _problem("no such resource (or a path that normalises elsewhere)",
                                             problem_ref))
    if route.scope is not None:
        operation["security"] = [{"bearer": []}]
        operation["x-scope"] = route.scope
        operation["description"] = f"Needs a token with the scope `{route.scope}`."
        responses.setdefault("401", _problem("no valid bearer token", problem_ref))
        responses.setdefault("403", _problem(f"the token lacks the scope {route.scope}", problem_ref))
    operation["responses"] = responses
    return operation


def _restrict_channels(paths: dict[str, Any], components: dict[str, Any], names: list[str]) -> None:
    """Reading inputs (the query parameter and the query body) name a configured channel or none."""
    for operations in paths.values():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                if parameter["name"] == "channel":
                    parameter["schema"] = {"type": "string", "enum": names}
    query = components.get("AvailabilityQuery", {}).get("properties", {})
    if "channel" in query:
        query["channel"] = {"anyOf": [{"type": "string", "enum": names}, {"type": "null"}], "default": None}


def _parameter(param: Any, schemas: _Schemas) -> dict[str, Any]:
    schema = schemas.of(param.schema)
    if param.repeated:
        schema = {"type": "array", "items": schema, "maxItems": MAX_REPEATED}
    spec: dict[str, Any] = {"name": param.name, "in": param.where, "required": param.where == "path",
                            "schema": schema}
    if param.repeated:
        spec.update(style="form", explode=True)
    if param.description:
        spec["description"] = param.description
    return spec


def _problem(description: str, problem_ref: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": problem_ref}}}


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


async def spec_handler(request: web.Request) -> web.Response:
    return web.json_response(request.app[SPEC])


async def docs_handler(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_PAGE, content_type="text/html")


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ATS API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:.1rem .3rem}
.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}
.m{font-weight:bold;text-transform:uppercase;display:inline-block;width:4.5rem}
.scope{color:#a33}.st{color:#555}
</style></head><body>
<h1>Inventory availability (ATS) API</h1>
<p>Machine-readable: <a href="openapi.json">openapi.json</a> (OpenAPI 3.1).
Send <code>Authorization: Bearer &lt;token&gt;</code>; errors are <code>application/problem+json</code>.</p>
<div id="ops">Loading…</div>
<script>
fetch("openapi.json").then(r => r.json()).then(spec => {
  const box = document.getElementById("ops"); box.textContent = "";
  const esc = s => String(s).replace(/[&<>]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;"}[c]));
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const div = document.createElement("div"); div.className = "op";
      const codes = Object.entries(op.responses).map(([c, r]) => `<b>${c}</b> ${esc(r.description)}`);
      const params = (op.parameters || []).map(p => `<code>${esc(p.name)}</code> (${p.in})`).join(", ");
      div.innerHTML = `<div><span class="m">${method}</span><code>${esc(path)}</code> ${esc(op.summary)}</div>`
        + (op["x-scope"] ? `<div class="scope">scope: ${esc(op["x-scope"])}</div>` : "")
        + (params ? `<div>parameters: ${params}</div>` : "")
        + (op.requestBody ? `<div>body: JSON (see the schema in openapi.json)</div>` : "")
        + `<div class="st">${codes.join(" · ")}</div>`;
      box.appendChild(div);
    }
  }
}).catch(e => { document.getElementById("ops").textContent = "could not load openapi.json: " + e; });
</script></body></html>
"""
