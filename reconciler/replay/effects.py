"""The effect of a replay: which sessions and users changed (status, decided_by), from what to
what, and the counts; read before and after each batch and folded into one summary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, or_, select
from sqlmodel import Session, col

from receiver.store.models import UserRecord, VerificationSession
from reconciler.drain import DrainStats

SUMMARY_LIST_LIMIT = 1000
"""Changed sessions (and users) listed in a summary; beyond it only the counts grow (and may
count twice one that changes in two batches)."""

StatusPair = dict[str, str] | None
"""{"status", "decided_by"} of a session or user, None when it did not exist."""


def _pair(status: str | None, decided_by: str | None) -> StatusPair:
    return {"status": status, "decided_by": decided_by or "auto"} if status is not None else None


@dataclass
class Effect:
    """What replaying a set of events did (or would do): counts and from → to changes."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("events", "applied", "superseded", "quarantined", "failed", "deferred"), 0
        )
    )
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    unlisted: dict[str, int] = field(default_factory=lambda: {"sessions": 0, "users": 0})

    def add_counts(self, stats: DrainStats, events: int, failed: int) -> None:
        """Fold one batch's counts in."""
        self.counts["events"] += events
        self.counts["applied"] += stats.applied
        self.counts["superseded"] += stats.superseded
        self.counts["quarantined"] += stats.quarantined
        self.counts["deferred"] += stats.deferred
        self.counts["failed"] += failed

    def add_changes(
        self,
        kind: str,
        before: dict[str, tuple[StatusPair, dict[str, Any]]],
        after: dict[str, tuple[StatusPair, dict[str, Any]]],
    ) -> None:
        """Fold one batch's before/after states in: keep the first `from`, the last `to`."""
        target = self.sessions if kind == "sessions" else self.users
        for key in sorted(set(before) | set(after)):
            old = before.get(key, (None, {}))
            new = after.get(key, (None, {}))
            if old[0] == new[0]:
                continue
            if key in target:
                target[key]["to"] = new[0]
                target[key].update({k: v for k, v in new[1].items() if v is not None})
            elif len(target) < SUMMARY_LIST_LIMIT:
                target[key] = {**old[1], **{k: v for k, v in new[1].items() if v is not None}}
                target[key].update({"from": old[0], "to": new[0]})
            else:
                self.unlisted[kind] += 1

    def to_json(self) -> dict[str, Any]:
        """The summary as the API and the replays table show it."""
        sessions = [v for _, v in sorted(self.sessions.items()) if v["from"] != v["to"]]
        users = [v for _, v in sorted(self.users.items()) if v["from"] != v["to"]]
        return {
            **self.counts,
            "sessions_changed": len(sessions) + self.unlisted["sessions"],
            "users_changed": len(users) + self.unlisted["users"],
            "sessions": sessions,
            "users": users,
            "truncated": bool(self.unlisted["sessions"] or self.unlisted["users"]),
            "failures": self.failures,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Effect:
        """Rebuild a stored summary, to keep adding batches to it."""
        effect = cls()
        for key in effect.counts:
            effect.counts[key] = int(data.get(key, 0))
        for item in data.get("sessions", []):
            effect.sessions[f"{item['provider']}/{item['session_id']}"] = dict(item)
        for item in data.get("users", []):
            effect.users[item["user_ref"]] = dict(item)
        effect.failures = list(data.get("failures", []))
        effect.unlisted["sessions"] = int(data.get("sessions_changed", 0)) - len(effect.sessions)
        effect.unlisted["users"] = int(data.get("users_changed", 0)) - len(effect.users)
        return effect


def session_states(
    db: Session, keys: set[tuple[str, str]]
) -> dict[str, tuple[StatusPair, dict[str, Any]]]:
    """`provider/session_id` → (status pair, identity) of these sessions, as they are now."""
    if not keys:
        return {}
    by_provider: dict[str, list[str]] = {}
    for provider, session_id in keys:
        by_provider.setdefault(provider, []).append(session_id)
    rows = db.execute(
        select(
            col(VerificationSession.provider),
            col(VerificationSession.session_id),
            col(VerificationSession.user_ref),
            col(VerificationSession.status),
            col(VerificationSession.decided_by),
        ).where(
            or_(
                *[
                    and_(
                        col(VerificationSession.provider) == provider,
                        col(VerificationSession.session_id).in_(ids),
                    )
                    for provider, ids in sorted(by_provider.items())
                ]
            )
        )
    )
    return {
        f"{provider}/{session_id}": (
            _pair(status, decided_by),
            {"provider": provider, "session_id": session_id, "user_ref": user_ref},
        )
        for provider, session_id, user_ref, status, decided_by in rows
    }


def user_states(db: Session, refs: set[str]) -> dict[str, tuple[StatusPair, dict[str, Any]]]:
    """user_ref → (status pair, identity) of these users, as they are now."""
    if not refs:
        return {}
    rows = db.execute(
        select(col(UserRecord.user_ref), col(UserRecord.status), col(UserRecord.decided_by)).where(
            col(UserRecord.user_ref).in_(sorted(refs))
        )
    )
    return {ref: (_pair(status, decided_by), {"user_ref": ref}) for ref, status, decided_by in rows}
