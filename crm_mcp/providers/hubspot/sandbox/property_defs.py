"""The property schema of the simulated portal: HubSpot's standard properties and the product's own.

Writes are validated against these (HubSpot refuses a property that does not exist, a value that is
not an option of an enumeration, a date that is not midnight UTC), and ``GET
/crm/v3/properties/{objectType}`` serves them as ``Property`` objects. Keys follow the official
``Property`` schema; the set of standard properties, their labels and options follow HubSpot's
defaults but are a selection, not the full list a real portal has.
"""

from __future__ import annotations

from typing import Any

_STAMP = "2019-08-06T02:41:08.029Z"  # when HubSpot-defined properties "were created"
_CUSTOM_STAMP = "2024-01-15T09:30:00.000Z"


def _options(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"label": label, "value": value, "displayOrder": i, "hidden": False, "description": ""}
        for i, (value, label) in enumerate(pairs)
    ]


def prop(
    name: str,
    label: str,
    kind: str = "string",
    field_type: str = "text",
    group: str = "contactinformation",
    *,
    options: list[tuple[str, str]] | None = None,
    read_only: bool = False,
    hubspot_defined: bool = True,
    unique: bool = False,
    external_options: bool = False,
    description: str = "",
) -> dict[str, Any]:
    """One ``Property`` in wire shape (``type`` is the data type, ``fieldType`` the UI control)."""
    stamp = _STAMP if hubspot_defined else _CUSTOM_STAMP
    out: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": kind,
        "fieldType": field_type,
        "groupName": group,
        "description": description,
        "options": _options(options or []),
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": external_options,
        "hasUniqueValue": unique,
        "hidden": False,
        "hubspotDefined": hubspot_defined,
        "formField": not read_only,
        "modificationMetadata": {
            "archivable": not hubspot_defined,
            "readOnlyDefinition": hubspot_defined,
            "readOnlyValue": read_only,
            "readOnlyOptions": hubspot_defined and kind == "enumeration",
        },
        "createdAt": stamp,
        "updatedAt": stamp,
        "archived": False,
        "dataSensitivity": "non_sensitive",
    }
    if not hubspot_defined:
        out["createdUserId"] = "1"
        out["updatedUserId"] = "1"
    return out


def _stamps(created: str, modified: str, group: str) -> list[dict[str, Any]]:
    return [
        prop(created, "Create Date", "datetime", "date", group, read_only=True),
        prop(modified, "Last Modified Date", "datetime", "date", group, read_only=True),
        prop("hs_object_id", "Record ID", "number", "number", group, read_only=True),
    ]


_OWNER = ("hubspot_owner_id", "Owner")

LIFECYCLE_STAGES = [
    ("subscriber", "Subscriber"),
    ("lead", "Lead"),
    ("marketingqualifiedlead", "Marketing Qualified Lead"),
    ("salesqualifiedlead", "Sales Qualified Lead"),
    ("opportunity", "Opportunity"),
    ("customer", "Customer"),
    ("evangelist", "Evangelist"),
    ("other", "Other"),
]
LEAD_STATUSES = [
    ("NEW", "New"),
    ("OPEN", "Open"),
    ("IN_PROGRESS", "In Progress"),
    ("OPEN_DEAL", "Open Deal"),
    ("UNQUALIFIED", "Unqualified"),
    ("ATTEMPTED_TO_CONTACT", "Attempted to Contact"),
    ("CONNECTED", "Connected"),
    ("BAD_TIMING", "Bad Timing"),
]
APPOINTMENT_STATUSES = [
    ("scheduled", "Scheduled"),
    ("confirmed", "Confirmed"),
    ("cancelled", "Cancelled"),
    ("completed", "Completed"),
    ("no_show", "No show"),
]
MEETING_OUTCOMES = [
    ("SCHEDULED", "Scheduled"),
    ("COMPLETED", "Completed"),
    ("RESCHEDULED", "Rescheduled"),
    ("NO_SHOW", "No Show"),
    ("CANCELED", "Canceled"),
]
TASK_STATUSES = [
    ("NOT_STARTED", "Not Started"),
    ("IN_PROGRESS", "In Progress"),
    ("WAITING", "Waiting"),
    ("COMPLETED", "Completed"),
    ("DEFERRED", "Deferred"),
]


def contact_properties() -> list[dict[str, Any]]:
    text = [
        ("email", "Email"),
        ("firstname", "First Name"),
        ("lastname", "Last Name"),
        ("company", "Company Name"),
        ("jobtitle", "Job Title"),
        ("website", "Website URL"),
        ("address", "Street Address"),
        ("city", "City"),
        ("state", "State/Region"),
        ("zip", "Postal Code"),
        ("country", "Country/Region"),
    ]
    props = [prop(n, label) for n, label in text]
    props += [
        prop("phone", "Phone Number", "string", "phonenumber"),
        prop("mobilephone", "Mobile Phone Number", "string", "phonenumber"),
        prop("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", options=LIFECYCLE_STAGES),
        prop("hs_lead_status", "Lead Status", "enumeration", "select", options=LEAD_STATUSES),
        prop(*_OWNER, "enumeration", "select", external_options=True),
        *_stamps("createdate", "lastmodifieddate", "contactinformation"),
        prop(
            "crm_mcp_appointment_status",
            "Appointment Status",
            "enumeration",
            "select",
            options=APPOINTMENT_STATUSES,
            hubspot_defined=False,
            description="Status of the contact's next appointment, kept by crm-mcp.",
        ),
        prop(
            "crm_mcp_next_appointment_date",
            "Next Appointment Date",
            "date",
            "date",
            hubspot_defined=False,
            description="Date of the contact's next appointment, kept by crm-mcp.",
        ),
        prop(
            "crm_mcp_lead_score",
            "Lead Score (crm-mcp)",
            "number",
            "number",
            hubspot_defined=False,
            description="Lead score computed by crm-mcp.",
        ),
    ]
    return props


def note_properties() -> list[dict[str, Any]]:
    g = "note"
    return [
        prop("hs_note_body", "Note body", "string", "html", g),
        prop("hs_timestamp", "Activity date", "datetime", "date", g),
        prop(*_OWNER, "enumeration", "select", g, external_options=True),
        prop("hs_attachment_ids", "Attachment IDs", "enumeration", "checkbox", g, external_options=True),
        *_stamps("hs_createdate", "hs_lastmodifieddate", g),
    ]


def task_properties() -> list[dict[str, Any]]:
    g = "task"
    priorities = [("LOW", "Low"), ("MEDIUM", "Medium"), ("HIGH", "High")]
    types = [("CALL", "Call"), ("EMAIL", "Email"), ("TODO", "To-do")]
    return [
        prop("hs_task_subject", "Task Title", "string", "text", g),
        prop("hs_task_body", "Notes", "string", "html", g),
        prop("hs_task_status", "Task Status", "enumeration", "select", g, options=TASK_STATUSES),
        prop("hs_task_priority", "Priority", "enumeration", "select", g, options=priorities),
        prop("hs_task_type", "Task Type", "enumeration", "select", g, options=types),
        prop("hs_timestamp", "Due date", "datetime", "date", g),
        prop(*_OWNER, "enumeration", "select", g, external_options=True),
        *_stamps("hs_createdate", "hs_lastmodifieddate", g),
    ]


def call_properties() -> list[dict[str, Any]]:
    """The call engagement's documented properties (the calls OpenAPI file types them generically)."""
    g = "call"
    directions = [("INBOUND", "Inbound"), ("OUTBOUND", "Outbound")]
    statuses = [
        (s, s.replace("_", " ").title()) for s in ("COMPLETED", "MISSED", "NO_ANSWER", "BUSY", "FAILED")
    ]
    return [
        prop("hs_call_title", "Call Title", "string", "text", g),
        prop("hs_call_body", "Call notes", "string", "html", g),
        prop("hs_call_direction", "Call direction", "enumeration", "select", g, options=directions),
        prop("hs_call_status", "Call status", "enumeration", "select", g, options=statuses),
        prop("hs_call_duration", "Call duration (ms)", "number", "number", g),
        prop("hs_call_from_number", "From number", "string", "text", g),
        prop("hs_call_to_number", "To number", "string", "text", g),
        prop("hs_call_recording_url", "Recording URL", "string", "text", g),
        prop("hs_timestamp", "Activity date", "datetime", "date", g),
        prop(*_OWNER, "enumeration", "select", g, external_options=True),
        *_stamps("hs_createdate", "hs_lastmodifieddate", g),
    ]


def meeting_properties() -> list[dict[str, Any]]:
    g = "meeting"
    return [
        prop("hs_meeting_title", "Meeting name", "string", "text", g),
        prop("hs_meeting_body", "Meeting description", "string", "html", g),
        prop("hs_internal_meeting_notes", "Internal notes", "string", "html", g),
        prop("hs_meeting_external_url", "External URL", "string", "text", g),
        prop("hs_meeting_location", "Location", "string", "text", g),
        prop("hs_meeting_start_time", "Start Time", "datetime", "date", g),
        prop("hs_meeting_end_time", "End Time", "datetime", "date", g),
        prop("hs_meeting_outcome", "Meeting outcome", "enumeration", "select", g, options=MEETING_OUTCOMES),
        prop("hs_timestamp", "Activity date", "datetime", "date", g),
        prop(*_OWNER, "enumeration", "select", g, external_options=True),
        *_stamps("hs_createdate", "hs_lastmodifieddate", g),
    ]
