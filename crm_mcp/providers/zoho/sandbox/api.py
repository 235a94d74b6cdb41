"""The simulated CRM API under `/<api host>/crm/<v7|v8>/…`: auth (`Zoho-oauthtoken`, bound to the
data centre), the org's concurrency cap and rolling 24 h API credits, then the record endpoints
with Zoho's envelopes: per-record statuses in 200 / 201 / 207 (400 when all fail), 204 on empty
reads, `page` up to 2,000 records and `page_token` past them, search by criteria/email/phone/word,
notes, multipart attachments, `settings/fields`, `org`."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .fields import FIELDS
from .oauth import API_HOSTS
from .store import MODULES, ORG_ID, Outcome

if TYPE_CHECKING:
    from . import ZohoSandbox

Handler = Callable[[Request], Awaitable[Response]]
WINDOW, BATCH, PAGE_MAX = 2000, 100, 200


def failure(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    return JSONResponse(
        {"code": code, "details": details, "message": message, "status": "error"}, status_code=status
    )


def written(outcomes: list[Outcome]) -> JSONResponse:
    """201 when all succeeded and one was added, 200 when all were updates, 207 when mixed,
    400 when all failed."""
    ok = [o for o in outcomes if o.ok]
    if not ok:
        status = 400
    elif len(ok) < len(outcomes):
        status = 207
    else:
        status = 201 if any(o.message == "record added" for o in ok) else 200
    return JSONResponse({"data": [o.render() for o in outcomes]}, status_code=status)


class Api:
    def __init__(self, sim: ZohoSandbox) -> None:
        self.sim = sim
        self._tokens: dict[str, tuple[str, int, int]] = {}  # page token -> (module, offset, per_page)

    def routes(self) -> list[Route]:
        base = "/{host}/crm/{version}"
        table: list[tuple[str, Handler, list[str]]] = [
            ("/org", self.org, ["GET"]),
            ("/settings/fields", self.fields, ["GET"]),
            ("/{module}/upsert", self.upsert, ["POST"]),
            ("/{module}/search", self.search, ["GET"]),
            ("/{module}/{id}/Notes", self.related_notes, ["GET"]),
            ("/{module}/{id}/Attachments", self.attachments, ["GET", "POST"]),
            ("/{module}/{id}", self.one, ["GET", "PUT", "DELETE"]),
            ("/{module}", self.many, ["GET", "POST", "PUT"]),
        ]
        return [Route(base + path, self.guard(fn), methods=methods) for path, fn, methods in table]

    # -- the edge every API call passes -------------------------------------------------------
    def guard(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            sim = self.sim
            if request.path_params["version"] not in ("v7", "v8"):
                return failure(
                    404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"
                )
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme != "Zoho-oauthtoken" or not token.strip():
                return failure(401, "INVALID_TOKEN", "invalid oauth token")
            # tokens are issued per data centre: the org's API host is the only one that knows them
            if API_HOSTS.get(request.path_params["host"]) != sim.data_centre or sim.accounts.valid(
                token.strip()
            ):
                return failure(401, "INVALID_TOKEN", "invalid oauth token")
            if sim.in_flight >= sim.concurrency:
                sim.stats["429_concurrency"] += 1
                return failure(429, "TOO_MANY_REQUESTS", "concurrency limit exceeded")
            cost = await self._cost(request)
            allowed, headers = sim.credits.spend(cost)
            if not allowed:
                sim.stats["429_credits"] += 1
                return failure(429, "TOO_MANY_REQUESTS", "API credits for the day are exhausted")
            sim.in_flight += 1
            try:
                if sim.latency_s:
                    await asyncio.sleep(sim.latency_s)
                sim.stats[f"{request.method} {_template(request)}"] += 1
                response = await handler(request)
            finally:
                sim.in_flight -= 1
            response.headers.update(headers)
            return response

        return guarded

    async def _cost(self, request: Request) -> int:
        """1 credit per call; writes 1 per 10 records."""
        if request.method in ("POST", "PUT") and "json" in request.headers.get("content-type", ""):
            try:
                data = (await request.json()).get("data")
            except (ValueError, AttributeError):
                return 1
            if isinstance(data, list) and data:
                return math.ceil(len(data) / 10)
        return 1

    # -- endpoints ----------------------------------------------------------------------------
    async def org(self, request: Request) -> Response:
        return JSONResponse(
            {"org": [{"id": ORG_ID, "company_name": "Sandbox Org", "domain_name": "sandbox"}]}
        )

    async def fields(self, request: Request) -> Response:
        module = request.query_params.get("module", "")
        if not module:
            return failure(
                400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", param="module"
            )
        if module not in FIELDS:
            return Response(status_code=204)
        return JSONResponse({"fields": FIELDS[module]})

    def _module(self, request: Request) -> str | None:
        module = request.path_params["module"]
        return module if module in MODULES else None

    async def _data(self, request: Request) -> list[Any] | JSONResponse:
        try:
            data = (await request.json()).get("data")
        except (ValueError, AttributeError):
            return failure(400, "INVALID_DATA", "body is not valid JSON")
        if not isinstance(data, list) or not data:
            return failure(
                400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", param="data"
            )
        if len(data) > BATCH:
            return failure(
                400, "LIMIT_EXCEEDED", f"Maximum of {BATCH} records can be sent at a time", limit=BATCH
            )
        return data

    async def many(self, request: Request) -> Response:
        module = self._module(request)
        if module is None:
            return failure(400, "INVALID_MODULE", "the module name given seems to be invalid")
        if request.method == "GET":
            return self._list(request, module)
        data = await self._data(request)
        if isinstance(data, JSONResponse):
            return data
        with self.sim.lock:
            store = self.sim.store
            if request.method == "POST":
                outcomes = [
                    store.insert(module, r, i) if isinstance(r, dict) else _bad(i) for i, r in enumerate(data)
                ]
            else:
                outcomes = [
                    store.update(module, str(r.get("id")), r, i) if isinstance(r, dict) else _bad(i)
                    for i, r in enumerate(data)
                ]
        return written(outcomes)

    async def upsert(self, request: Request) -> Response:
        module = self._module(request)
        if module is None:
            return failure(400, "INVALID_MODULE", "the module name given seems to be invalid")
        data = await self._data(request)
        if isinstance(data, JSONResponse):
            return data
        body = await request.json()
        keys = body.get("duplicate_check_fields") or (["Email"] if module in ("Leads", "Contacts") else [])
        with self.sim.lock:
            outcomes = [
                self.sim.store.upsert(module, r, i, list(keys)) if isinstance(r, dict) else _bad(i)
                for i, r in enumerate(data)
            ]
        return written(outcomes)

    async def one(self, request: Request) -> Response:
        module, rid = self._module(request), request.path_params["id"]
        if module is None:
            return failure(400, "INVALID_MODULE", "the module name given seems to be invalid")
        table = self.sim.store.tables[module]
        if request.method == "GET":
            record = table.get(rid)
            return JSONResponse({"data": [record]}) if record else Response(status_code=204)
        if request.method == "DELETE":
            with self.sim.lock:
                gone = table.pop(rid, None)
            if gone is None:
                return written(
                    [Outcome(False, "INVALID_DATA", "the id given seems to be invalid", {"id": rid})]
                )
            return JSONResponse({"data": [Outcome(True, "SUCCESS", "record deleted", {"id": rid}).render()]})
        data = await self._data(request)
        if isinstance(data, JSONResponse):
            return data
        with self.sim.lock:
            outcome = self.sim.store.update(module, rid, data[0], 0)
        return written([outcome])

    def _list(self, request: Request, module: str) -> Response:
        q = request.query_params
        if not q.get("fields"):
            return failure(
                400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", param="fields"
            )
        rows = self.sim.store.rows(module)
        if q.get("sort_order", "desc") == "desc":
            rows.reverse()
        return self._page(request, module, rows, tokens=True)

    def _page(self, request: Request, module: str, rows: list[dict[str, Any]], *, tokens: bool) -> Response:
        q = request.query_params
        per_page = min(int(q.get("per_page", PAGE_MAX) or PAGE_MAX), PAGE_MAX)
        if "page_token" in q:
            if "page" in q or not tokens:
                return failure(400, "INVALID_REQUEST", "page_token cannot be combined with page")
            entry = self._tokens.get(q["page_token"])
            if entry is None or entry[0] != module:
                return failure(400, "INVALID_DATA", "invalid page token", param="page_token")
            _, offset, per_page = entry
            page = 0
        else:
            page = max(1, int(q.get("page", 1) or 1))
            offset = (page - 1) * per_page
            if offset + per_page > WINDOW:
                return failure(
                    400,
                    "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                    f"cannot fetch more than {WINDOW} records with page; use page_token",
                    limit=WINDOW,
                )
        chunk = rows[offset : offset + per_page]
        if not chunk:
            return Response(status_code=204)
        more = offset + per_page < len(rows)
        token = None
        if more and tokens:
            token = secrets.token_hex(12)
            self._tokens[token] = (module, offset + per_page, per_page)
        info = {
            "per_page": per_page,
            "count": len(chunk),
            "page": page,
            "more_records": more,
            "next_page_token": token,
            "previous_page_token": None,
            "page_token_expiry": None,
            "sort_by": "id",
            "sort_order": q.get("sort_order", "desc"),
        }
        return JSONResponse({"data": chunk, "info": info})

    async def search(self, request: Request) -> Response:
        module = self._module(request)
        if module is None:
            return failure(400, "INVALID_MODULE", "the module name given seems to be invalid")
        try:
            rows = self.sim.store.search(module, request.query_params)
        except ValueError as exc:
            return failure(400, "INVALID_QUERY", str(exc), reason="invalid criteria")
        return self._page(request, module, rows, tokens=False)

    async def related_notes(self, request: Request) -> Response:
        module, rid = request.path_params["module"], request.path_params["id"]
        notes = [
            n
            for n in self.sim.store.rows("Notes")
            if (n.get("Parent_Id") or {}).get("id") == rid
            and ((n.get("Parent_Id") or {}).get("module") or {}).get("api_name") == module
        ]
        return self._page(request, "Notes", notes, tokens=False)

    async def attachments(self, request: Request) -> Response:
        module, rid = self._module(request), request.path_params["id"]
        if module not in ("Leads", "Contacts") or rid not in self.sim.store.tables[module]:
            return failure(400, "INVALID_DATA", "the related id given seems to be invalid")
        store = self.sim.store
        if request.method == "GET":
            mine = [a for a in store.attachments.values() if a["Parent_Id"]["id"] == rid]
            return self._page(
                request,
                "Attachments",
                [{k: v for k, v in a.items() if k != "content"} for a in mine],
                tokens=False,
            )
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return failure(
                400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", param="file"
            )
        content = await upload.read()
        if len(content) > self.sim.max_attachment_bytes:
            return failure(413, "FILE_SIZE_MORE_THAN_ALLOWED_SIZE", "file size exceeds the limit")
        with self.sim.lock:
            aid = store.new_id()
            store.attachments[aid] = {
                "id": aid,
                "File_Name": upload.filename,
                "Size": str(len(content)),
                "Created_Time": store.now(),
                "Parent_Id": {"id": rid},
                "$se_module": module,
                "$type": "Attachment",
                "content_type": upload.content_type,
                "content": content,
            }
        details = {"id": aid, "Created_Time": store.attachments[aid]["Created_Time"]}
        done = {
            "code": "SUCCESS",
            "details": details,
            "message": "attachment uploaded successfully",
            "status": "success",
        }
        return JSONResponse({"data": [done]}, status_code=200)


def _bad(index: int) -> Outcome:
    return Outcome(False, "INVALID_DATA", "invalid data", {"json_path": f"$.data[{index}]"})


def _template(request: Request) -> str:
    parts = request.url.path.split("/")[4:]  # after /<host>/crm/<version>
    return "/" + "/".join("{id}" if p.isdigit() else p for p in parts)
