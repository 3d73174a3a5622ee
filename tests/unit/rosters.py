"""Small rosters for tests, built the way an admin writes them."""

from __future__ import annotations

from typing import Any

from daemon.core.model import Roster


def roster(*reps: dict[str, Any], org_tz: str = "America/New_York", fiscal: str = "02-01",
           managers: list[dict[str, Any]] | None = None, policy: dict[str, Any] | None = None
           ) -> Roster:  # fmt: skip
    return Roster.model_validate(
        {
            "organization": {"name": "Acme", "timezone": org_tz, "fiscal_year_start": fiscal},
            "managers": managers
            or [{"email": "maya@acme.test", "name": "Maya Chen", "timezone": "America/Chicago"}],
            "reps": list(reps),
            "policy": policy or {},
        }
    )


def rep(email: str = "sam@acme.test", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "email": email,
        "name": email.split("@")[0].title(),
        "role": "sdr",
        "start_date": "2026-09-01",
        "manager": "maya@acme.test",
    }
    base.update(fields)
    return base
