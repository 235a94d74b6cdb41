"""Zoho CRM connector (API v8 by default, v7 selectable): neutral models <-> Zoho records.

Quirks handled here, from Zoho's OpenAPI description (zoho/crm-oas v8.0) and crm-apis.md §2:
- Auth: `Authorization: Zoho-oauthtoken …` (see `auth`), against the data centre's accounts
  server and API domain (`settings.endpoints`); access tokens reused for their hour.
- People: a neutral contact is a Leads record (the default: new people become leads) or a
  Contacts record (`Contacts:<id>`, see `wire`). Searches and lookups cover both modules.
- Writes answer per record inside 201 / 202 / 207 (400 when every record failed): each record's
  status becomes its own result. Upserts go to `Leads/upsert` with `duplicate_check_fields`
  (Email, else Phone), at most 100 records a call; Last_Name is mandatory only on insert, so it
  is sent (a fallback from the name or email) only for the records Zoho says are new.
- Reads: 204 with no body is "no records"; `page` reaches 2,000 records, `page_token` the rest.
- Limits: API credits per rolling 24 h (`daily_credits`, learnt from X-API-CREDITS-REMAINING),
  the plan's concurrency cap (a semaphore here), 429 without Retry-After (the client backs off).
Activities (notes, tasks, events, calls, attachments) are in `activities`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from crm_mcp.connectors.auth import StaticTokenAuth
from crm_mcp.connectors.base import BatchItem, Contact, ContactPage, FieldSchema
from crm_mcp.connectors.fields import FieldResolver
from crm_mcp.connectors.http import ResilientClient, check_base_url
from crm_mcp.connectors.oauth import TokenStore
from crm_mcp.errors import InvalidRequestError, NotFoundError, UpstreamUnavailableError

from . import wire
from .activities import ZohoActivities
from .auth import SCHEME, RefreshBudget, ZohoOAuth
from .settings import DEFAULT_ACCOUNTS_URL, DEFAULT_API_DOMAIN, PLAN_CONCURRENCY
from .spec import (
    BATCH_MAX,
    LEAD_STATUS_TO_WIRE,
    LEADS,
    PAGE_MAX,
    PAGE_WINDOW,
    PERSON_FIELDS,
    PERSON_MODULES,
    SEARCH_CRITERIA_MAX,
    TOKEN_PATH,
    ZOHO_SPEC,
)

RECONNECT_HINT = (
    "Generate a new refresh token for the Zoho client in the org's data centre (api-console), "
    "set it as CRM_MCP_ZOHO_REFRESH_TOKEN (or refresh_token in crm-mcp.toml) and retry."
)


def _statuses(values: Mapping[str, Any]) -> dict[str, Any]:
    """A neutral lead status as Zoho's default Lead_Status option (an org's own option that is
    already a neutral word still matches: the resolver picks options case-insensitively)."""
    out = dict(values)
    status = out.get("lead_status")
    if isinstance(status, str) and status.lower() in LEAD_STATUS_TO_WIRE:
        out["lead_status"] = LEAD_STATUS_TO_WIRE[status.lower()]
    return out


class ZohoConnector(ZohoActivities):
    """One Zoho CRM org. Capabilities: contacts, batch, phone lookup, notes, tasks, appointments
    (Events), call activities (Calls), attachments, custom fields."""

    provider = "zoho"
    max_batch = BATCH_MAX

    def __init__(
        self,
        connection: str,
        *,
        token: str | None = None,
        accounts_url: str = DEFAULT_ACCOUNTS_URL,
        api_domain: str = DEFAULT_API_DOMAIN,
        api_version: str = "v8",
        client_id: str | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        token_store: TokenStore | None = None,
        token_clock: Callable[[], float] = time.time,
        concurrency: int = PLAN_CONCURRENCY["enterprise"],
        daily_credits: int | None = None,
        client: ResilientClient | None = None,
        **client_kwargs: Any,
    ) -> None:
        """OAuth when client id, secret and a refresh token (or token store) are given, else the
        ready access `token`.

        Raises:
            ConfigurationError: no usable credentials, or a URL that is not https/loopback.
        """
        self.connection = connection
        self.api_version = api_version
        self.oauth: ZohoOAuth | None = None
        if client is None:
            api = check_base_url(api_domain)
            auth: StaticTokenAuth | ZohoOAuth
            if client_id and client_secret and (refresh_token or token_store is not None):
                auth = self.oauth = ZohoOAuth(
                    provider=self.provider,
                    connection=connection,
                    token_url=f"{check_base_url(accounts_url)}{TOKEN_PATH}",
                    client_id=client_id,
                    client_secret=client_secret,
                    refresh_token=refresh_token,
                    store=token_store,
                    clock=token_clock,
                    reconnect_hint=RECONNECT_HINT,
                    budget=RefreshBudget(clock=token_clock),
                )
            else:
                auth = StaticTokenAuth(token or "", scheme=SCHEME)
            spec = (
                ZOHO_SPEC
                if daily_credits is None
                else dataclasses.replace(ZOHO_SPEC, daily_limit=daily_credits)
            )
            client = ResilientClient(
                spec, connection, base_url=f"{api}/crm/{api_version}", auth=auth, **client_kwargs
            )
        self._client = client
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._fields: dict[str, list[FieldSchema]] = {}
        self._resolvers = {
            m: FieldResolver(ZOHO_SPEC.logical_fields, self._loader(m), write_key=lambda f: f.key)
            for m in PERSON_MODULES
        }

    @property
    def client(self) -> ResilientClient:
        return self._client

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        """One request within the plan's concurrency cap; the decoded body, None for a 204."""
        async with self._slots:
            response = await self._client.request(method, path, **kw)
        if response.status_code == 204:
            return None
        return self._client.decode(response, method, path)

    async def ping(self) -> None:
        await self._call("GET", "/org")

    # -- contacts ---------------------------------------------------------------------------
    async def upsert_contact(self, contact: Contact) -> tuple[Contact, bool]:
        """By id when it has one (an update of that record), else `Leads/upsert` by Email (or Phone).

        Raises:
            InvalidRequestError: neither email nor phone, or Zoho refused a value (names the field).
            NotFoundError: the id names no record.
        """
        if contact.id:
            module, rid = wire.split_id(contact.id)
            record = await self._person_record(contact, module)
            try:
                body = await self._call(
                    "PUT", f"/{module}/{rid}", json={"data": [record], "trigger": []}, idempotent=True
                )
            except InvalidRequestError as exc:
                if " on id:" not in exc.message:
                    raise
                msg = f"zoho has no {module} record {rid}"
                raise NotFoundError(msg, provider=self.provider, status=exc.status) from None
            saved_id = wire.item_id(self._single(body)) or rid
            return contact.model_copy(update={"id": wire.person_id(module, saved_id)}), False
        (result,) = await self.upsert_contacts([contact])
        if result.error is not None or result.contact is None:
            raise InvalidRequestError(
                f"zoho upsert refused: {result.error}", provider=self.provider, status=400
            )
        return result.contact, result.created

    def _single(self, body: Any) -> dict[str, Any]:
        try:
            (item,) = wire.record_results(body, 1)
        except wire.WireError as exc:
            raise UpstreamUnavailableError(f"zoho: {exc}", provider=self.provider) from None
        if not wire.item_ok(item):
            raise InvalidRequestError(
                f"zoho refused the record: {wire.item_error(item)}", provider=self.provider, status=400
            )
        return item

    async def _person_record(self, contact: Contact, module: str) -> dict[str, Any]:
        record = wire.person_record(contact)
        if contact.custom_fields:
            record.update(await self._resolvers[module].resolve(_statuses(contact.custom_fields)))
        return record

    async def get_contact(self, contact_id: str) -> Contact:
        """Raises: NotFoundError (Zoho answers 204 for an id it has no record for)."""
        module, rid = wire.split_id(contact_id)
        body = await self._call("GET", f"/{module}/{rid}")
        rows = body.get("data") if isinstance(body, dict) else None
        if not rows:
            raise NotFoundError(
                f"zoho has no {module[:-1].lower()} {rid} (204 No Content)",
                provider=self.provider,
                status=404,
            )
        return self._person(rows[0], module)

    def _person(self, record: Any, module: str) -> Contact:
        try:
            return wire.contact_from_record(record, module)
        except (wire.WireError, ValueError, TypeError) as exc:
            raise UpstreamUnavailableError(
                f"zoho: unexpected {module} record ({exc})", provider=self.provider
            ) from None

    async def search_contacts(self, query: str | None, limit: int, cursor: str | None) -> ContactPage:
        """A page of leads, then of contacts, matching `query` (by its shape: criteria `(…)`,
        email, phone or word; everything without one). Cursors say the module and the page (or
        the page token past 2,000 records).

        Raises:
            InvalidRequestError: limit below 1, or a cursor this method did not return.
        """
        module, page, token, size = self._cursor(cursor, limit)
        q = (query or "").strip()
        params: dict[str, Any] = {"per_page": size, "fields": ",".join(PERSON_FIELDS)}
        if token:
            params["page_token"] = token
        else:
            params["page"] = page
        if q:
            params.update(wire.search_params(q))
            body = await self._call("GET", f"/{module}/search", params=params)
        else:
            params.update(sort_by="id", sort_order="asc")
            body = await self._call("GET", f"/{module}", params=params)
        data = body.get("data", []) if isinstance(body, dict) else []
        info = body.get("info", {}) if isinstance(body, dict) else {}
        people = [self._person(r, module) for r in data]
        nxt: str | None = None
        if info.get("more_records"):
            if not q and (token or page * size >= PAGE_WINDOW) and info.get("next_page_token"):
                nxt = f"{module}|t|{info['next_page_token']}|{size}"
            elif page * size < PAGE_WINDOW and not token:
                nxt = f"{module}|p|{page + 1}|{size}"
        if nxt is None and module != PERSON_MODULES[-1]:
            nxt = f"{PERSON_MODULES[PERSON_MODULES.index(module) + 1]}|p|1|{size}"
        return ContactPage(contacts=people, next_cursor=nxt)

    def _cursor(self, cursor: str | None, limit: int) -> tuple[str, int, str, int]:
        bad = InvalidRequestError(
            f"zoho search: limit must be >= 1 and the cursor one a page returned (got {cursor!r})",
            provider=self.provider,
        )
        if limit < 1:
            raise bad
        if not cursor:
            return LEADS, 1, "", min(limit, PAGE_MAX)
        parts = cursor.split("|")
        if (
            len(parts) != 4
            or parts[0] not in PERSON_MODULES
            or parts[1] not in ("p", "t")
            or not parts[3].isdigit()
        ):
            raise bad
        size = int(parts[3])
        if parts[1] == "t":
            return parts[0], 0, parts[2], size
        if not parts[2].isdigit():
            raise bad
        return parts[0], int(parts[2]), "", size

    async def set_contact_fields(self, contact_id: str, values: Mapping[str, Any]) -> None:
        module, rid = wire.split_id(contact_id)
        resolved = await self._resolvers[module].resolve(_statuses(values))
        if resolved:
            body = await self._call(
                "PUT", f"/{module}/{rid}", json={"data": [resolved], "trigger": []}, idempotent=True
            )
            self._single(body)

    # -- batch ------------------------------------------------------------------------------
    async def upsert_contacts(self, contacts: list[Contact]) -> list[BatchItem]:
        """Upsert into Leads, 100 a call, by Email (records with one) or Phone; one BatchItem per
        input from Zoho's per-record statuses. New records Zoho refuses for a missing Last_Name
        are sent once more with a fallback Last_Name (never sent on updates: it would overwrite).

        Raises:
            RetryableError, AuthError, CircuitOpenError: a call could not be delivered (safe to
                retry whole: upserts are idempotent).
        """
        items: dict[int, BatchItem] = {}
        rounds: dict[str, list[int]] = {"Email": [], "Phone": []}
        for i, c in enumerate(contacts):
            key = "Email" if c.email else "Phone" if c.phone else None
            if key is None:
                items[i] = BatchItem(i, error="a Zoho upsert needs an email or a phone")
            else:
                rounds[key].append(i)
        for key, indexes in rounds.items():
            for first in range(0, len(indexes), BATCH_MAX):
                chunk = indexes[first : first + BATCH_MAX]
                retry = await self._upsert_round(contacts, chunk, key, items, fallback=False)
                if retry:
                    await self._upsert_round(contacts, retry, key, items, fallback=True)
        return [items[i] for i in range(len(contacts))]

    async def _upsert_round(
        self,
        contacts: list[Contact],
        chunk: list[int],
        key: str,
        items: dict[int, BatchItem],
        *,
        fallback: bool,
    ) -> list[int]:
        """One upsert call; fills `items`, returns the indexes to send again with a Last_Name."""
        records = []
        for i in chunk:
            record = await self._person_record(contacts[i], LEADS)
            if fallback and "Last_Name" not in record:
                record["Last_Name"] = wire.fallback_last_name(contacts[i])
            records.append(record)
        body = {"data": records, "duplicate_check_fields": [key], "trigger": []}
        try:
            answer = await self._call("POST", f"/{LEADS}/upsert", json=body, idempotent=True)
            results = wire.record_results(answer, len(chunk))
        except InvalidRequestError as exc:  # 400: every record failed; Zoho's first error in the message
            if not fallback and "MANDATORY_NOT_FOUND on Last_Name" in exc.message:
                return list(chunk)
            items.update({i: BatchItem(i, error=exc.message) for i in chunk})
            return []
        except wire.WireError as exc:
            raise UpstreamUnavailableError(f"zoho upsert: {exc}", provider=self.provider) from None
        again = []
        for i, item in zip(chunk, results, strict=True):
            rid = wire.item_id(item)
            if wire.item_ok(item) and rid:
                created = str(item.get("action") or "insert") == "insert"
                saved = contacts[i].model_copy(update={"id": wire.person_id(LEADS, rid)})
                items[i] = BatchItem(i, saved, created=created)
            elif not fallback and wire.missing_last_name(item):
                again.append(i)
            else:
                items[i] = BatchItem(i, error=wire.item_error(item))
        return again

    async def get_contacts_by_email(self, emails: list[str]) -> dict[str, Contact]:
        """Leads, then contacts for the emails no lead has, by search criteria (10 emails a
        call: Zoho's criteria limit); keyed by the email lower-cased, absent ones left out."""
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        found: dict[str, Contact] = {}
        for module in PERSON_MODULES:
            rest = [e for e in wanted if e not in found]
            for first in range(0, len(rest), SEARCH_CRITERIA_MAX):
                group = rest[first : first + SEARCH_CRITERIA_MAX]
                params = {"criteria": wire.email_criteria(group), "per_page": PAGE_MAX}
                body = await self._call("GET", f"/{module}/search", params=params)
                for row in body.get("data", []) if isinstance(body, dict) else []:
                    person = self._person(row, module)
                    if person.email and person.email.lower() in group:
                        found.setdefault(person.email.lower(), person)
        return found

    # -- phone lookup -----------------------------------------------------------------------
    async def find_contacts_by_phone(self, e164: str) -> list[Contact]:
        """Leads and contacts with this number (read-only). Zoho's phone search compares the
        number as stored: the E.164 form is tried first, then the org's likely formats, and the
        first format that finds anyone in a module ends that module's search."""
        out: list[Contact] = []
        for module in PERSON_MODULES:
            for variant in wire.phone_variants(e164):
                body = await self._call(
                    "GET", f"/{module}/search", params={"phone": variant, "per_page": PAGE_MAX}
                )
                rows = body.get("data", []) if isinstance(body, dict) else []
                if rows:
                    out += [self._person(r, module) for r in rows]
                    break
        return out

    # -- custom fields ----------------------------------------------------------------------
    def _loader(self, module: str) -> Callable[[], Any]:
        async def load() -> list[FieldSchema]:
            return await self._module_fields(module)

        return load

    async def _module_fields(self, module: str) -> list[FieldSchema]:
        body = await self._call("GET", "/settings/fields", params={"module": module})
        rows = body.get("fields", []) if isinstance(body, dict) else []
        fields = [wire.field_from_wire(f) for f in rows if isinstance(f, dict) and f.get("api_name")]
        self._fields[module] = fields
        return fields

    async def list_custom_fields(self) -> list[FieldSchema]:
        """The org's own Leads fields (`settings/fields`, custom_field true)."""
        return [f for f in await self._module_fields(LEADS) if f.custom]

    def contact_fields(self) -> list[FieldSchema]:
        """The standard Leads fields: the org's list once read, else the ones every org has."""
        loaded = [f for f in self._fields.get(LEADS, []) if not f.custom]
        return loaded or list(wire.CORE_PERSON_FIELDS)

    def appointment_fields(self) -> list[FieldSchema]:
        return list(wire.EVENT_FIELDS)

    def snapshot(self) -> dict[str, Any]:
        return self._client.snapshot()

    async def aclose(self) -> None:
        await self._client.aclose()
