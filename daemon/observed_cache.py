"""The observed calendar, cached in the ledger between passes as JSON.

Sync tokens only deliver what changed, so the last full picture of each manager's calendar is
kept. It is a cache: a full listing (no token, or an expired one) rebuilds it from scratch.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from daemon.core.observed import Attendee, ObservedOverride, ObservedSeries


def _attendees(items: tuple[Attendee, ...]) -> list[list[str]]:
    return [[a.email, a.partstat, a.name] for a in items]


def dump(series: ObservedSeries) -> str:
    return json.dumps(
        {
            "uid": series.uid,
            "owned": series.owned,
            "start": series.start.isoformat(),
            "duration": series.duration.total_seconds(),
            "timezone": series.timezone,
            "rrule": series.rrule,
            "until": series.until.isoformat() if series.until else None,
            "organizer": series.organizer,
            "attendees": _attendees(series.attendees),
            "description": series.description,
            "summary": series.summary,
            "exdates": [d.isoformat() for d in series.exdates],
            "overrides": [
                {
                    "recurrence_id": o.recurrence_id.isoformat(),
                    "start": o.start.isoformat(),
                    "end": o.end.isoformat(),
                    "cancelled": o.cancelled,
                    "attendees": _attendees(o.attendees),
                    "description": o.description,
                }
                for o in series.overrides
            ],
        },
        sort_keys=True,
    )


def _people(items: list[Any]) -> tuple[Attendee, ...]:
    return tuple(Attendee(email=e, partstat=p, name=n) for e, p, n in items)


def load(text: str) -> ObservedSeries:
    data = json.loads(text)
    return ObservedSeries(
        uid=data["uid"],
        owned=data["owned"],
        start=datetime.fromisoformat(data["start"]),
        duration=timedelta(seconds=data["duration"]),
        timezone=data["timezone"],
        rrule=data["rrule"],
        until=date.fromisoformat(data["until"]) if data["until"] else None,
        organizer=data["organizer"],
        attendees=_people(data["attendees"]),
        description=data["description"],
        summary=data["summary"],
        exdates=tuple(datetime.fromisoformat(d) for d in data["exdates"]),
        overrides=tuple(
            ObservedOverride(
                recurrence_id=datetime.fromisoformat(o["recurrence_id"]),
                start=datetime.fromisoformat(o["start"]),
                end=datetime.fromisoformat(o["end"]),
                cancelled=o["cancelled"],
                attendees=_people(o["attendees"]),
                description=o["description"],
            )
            for o in data["overrides"]
        ),
    )
