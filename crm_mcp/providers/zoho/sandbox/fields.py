"""The simulated org's field metadata (`settings/fields`), in the shape of crm-oas fields.json:
the standard person fields plus the custom ones crm-mcp's logical fields resolve to."""

from __future__ import annotations

from typing import Any

_ids = iter(range(4876876000000002001, 4876876000000003000))


def _field(
    api: str,
    label: str,
    kind: str,
    *,
    custom: bool = False,
    mandatory: bool = False,
    options: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "id": str(next(_ids)),
        "api_name": api,
        "field_label": label,
        "display_label": label,
        "data_type": kind,
        "json_type": "integer" if kind == "integer" else "string",
        "system_mandatory": mandatory,
        "custom_field": custom,
        "read_only": False,
        "visible": True,
        "pick_list_values": [
            {"display_value": o, "actual_value": o, "sequence_number": i, "type": "used"}
            for i, o in enumerate(options)
        ],
    }


LEAD_STATUSES = (
    "Not Contacted",
    "Attempted to Contact",
    "Contact in Future",
    "Contacted",
    "Junk Lead",
    "Lost Lead",
    "Not Qualified",
    "Pre-Qualified",
)
APPOINTMENT_STATUSES = ("Scheduled", "Confirmed", "Cancelled", "Completed", "No Show")


def _person(with_status: bool) -> list[dict[str, Any]]:
    fields = [
        _field("First_Name", "First Name", "text"),
        _field("Last_Name", "Last Name", "text", mandatory=True),
        _field("Email", "Email", "email"),
        _field("Phone", "Phone", "phone"),
        _field("Mobile", "Mobile", "phone"),
        _field("Lead_Source", "Lead Source", "picklist", options=("Advertisement", "Web Download", "Chat")),
        _field("Lead_Score", "Lead Score", "integer", custom=True),
        _field(
            "Appointment_Status", "Appointment Status", "picklist", custom=True, options=APPOINTMENT_STATUSES
        ),
        _field("Next_Appointment_Date", "Next Appointment Date", "date", custom=True),
    ]
    if with_status:
        fields.insert(5, _field("Company", "Company", "text"))
        fields.insert(6, _field("Lead_Status", "Lead Status", "picklist", options=LEAD_STATUSES))
    return fields


FIELDS: dict[str, list[dict[str, Any]]] = {
    "Leads": _person(True),
    "Contacts": _person(False),
    "Events": [
        _field("Event_Title", "Title", "text", mandatory=True),
        _field("Start_DateTime", "From", "datetime", mandatory=True),
        _field("End_DateTime", "To", "datetime", mandatory=True),
        _field(
            "Appointment_Status", "Appointment Status", "picklist", custom=True, options=APPOINTMENT_STATUSES
        ),
    ],
}
