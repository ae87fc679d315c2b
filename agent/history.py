"""Queries over the recorded sessions: listing, and finding strays.

Ids are UUIDv7 and only move forward, so an id's time is never before its
session's start: every session started since a moment has an id at or
above that moment's floor, and a listing walks back from the newest only
as far as it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from agent.details import ANY, SessionFilter
from agent.errors import StorageError
from agent.events import EventKind
from agent.record import Summary
from agent.session import EndReason, Session, SessionStatus, to_micros
from agent.session_id import parse_session_id, session_id_floor
from agent.store import SessionStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent.host_choice import HostChoice

__all__ = ["ORPHAN_SCAN", "abandon_strays", "list_sessions", "sessions_that_ran", "summaries_overlapping"]

log = logging.getLogger(__name__)

# How far an id's time may run ahead of its session's start (ids only move
# forward, so a clock set back makes the next ones a little later).
_ID_AHEAD = timedelta(hours=1)
ORPHAN_SCAN = 64  # recent records looked at for a second active session, at the daemon's start


def list_sessions(
    store: SessionStore,
    actives: dict[str, Session],
    *,
    statuses: frozenset[SessionStatus] | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    before: str | None = None,
    errors: list[StorageError] | None = None,
    scope: str | None = None,
    where: SessionFilter = ANY,
    hosts: HostChoice | None = None,
) -> list[Session]:
    """Sessions of ``scope`` (``None``: of every scope) newest first; corrupt
    records go to ``errors`` if given (else raise). ``actives``: the active
    session of each scope listed, which answer a listing of active sessions
    without a scan. ``before`` (a session id) continues after a page.
    ``hosts``: of other machines too, or instead (``agent.host_choice``)."""
    if limit is not None and limit <= 0:
        return []
    if hosts is not None and hosts.remote:
        return _over_hosts(
            store,
            hosts,
            statuses=statuses,
            since=since,
            limit=limit,
            before=before,
            errors=errors,
            scope=scope,
            where=where,
        )
    if statuses == frozenset({SessionStatus.ACTIVE}):  # no scan: the pointers know
        ordered = sorted(actives.values(), key=lambda s: s.id, reverse=True)
        return [
            s
            for s in ordered
            if (since is None or s.started_at >= since)
            and (before is None or s.id < before)
            and where.keeps(s)
        ][:limit]
    floor = session_id_floor(since) if since else None
    ceiling = parse_session_id(before) if before is not None else None
    found: list[Session] = []
    listed = store.newest_first(
        scope=scope, floor=floor, before=ceiling, errors=errors, project=where.project
    )
    for session in listed:
        if since is not None and session.started_at < since:
            continue
        if statuses is not None and session.status not in statuses:
            continue
        if not where.keeps(session):
            continue
        found.append(session)
        if limit is not None and len(found) >= limit:
            break
    return found


def _over_hosts(
    store: SessionStore,
    hosts: HostChoice,
    *,
    statuses: frozenset[SessionStatus] | None,
    since: datetime | None,
    limit: int | None,
    before: str | None,
    errors: list[StorageError] | None,
    scope: str | None,
    where: SessionFilter,
) -> list[Session]:
    """``list_sessions`` over this machine's sessions (if chosen) and the
    remote ones, merged newest first."""
    import heapq

    floor = session_id_floor(since) if since else None
    ceiling = parse_session_id(before) if before is not None else None
    streams: list[Iterator[Session]] = []
    if hosts.local:
        local = store.newest_first(
            scope=scope, floor=floor, before=ceiling, errors=errors, project=where.project
        )
        streams.append(hosts.named(s) for s in local)
    streams.append(hosts.remote_sessions(store, ceiling, errors))
    found: list[Session] = []
    for session in heapq.merge(*streams, key=lambda s: s.id, reverse=True):
        if floor is not None and session.id < floor:
            break
        if (
            (since is not None and session.started_at < since)
            or (statuses is not None and session.status not in statuses)
            or (scope is not None and session.scope != scope)
            or not where.keeps(session)
        ):
            continue
        found.append(session)
        if limit is not None and len(found) >= limit:
            break
    return found


def summaries_overlapping(
    store: SessionStore,
    actives: dict[str, Session],
    since: datetime,
    until: datetime,
    errors: list[StorageError] | None = None,
    *,
    hosts: HostChoice | None = None,
) -> Iterator[Summary]:
    """What a report reads: the sessions that ran at some moment of
    ``[since, until)`` -- started before ``until``, not ended before
    ``since`` -- in brief (``Summary``), newest first. Only the range is
    read: ids are ordered by start time, and no session that overlaps it
    started more than the store's longest ended session before ``since``;
    the active ones, which may be older, the pointers know."""
    start, end = to_micros(since), to_micros(until)
    if hosts is not None and hosts.remote:
        remote_floor = session_id_floor(since - timedelta(microseconds=store.remote.longest()) - _ID_AHEAD)
        remote = store.remote.summaries(
            hosts.remote_host, errors, floor=remote_floor, before=session_id_floor(until + _ID_AHEAD)
        )
        seen: set[str] = set()
        for host, summary in remote:
            if summary.start < end and (summary.end is None or summary.end >= start):
                seen.add(summary.id)
                summary.host = host
                yield summary
        for host, summary in store.remote.active_summaries(hosts.remote_host):
            if summary.id not in seen and summary.start < end:
                summary.host = host
                yield summary
        if not hosts.local:
            return
    own = None if hosts is None else hosts.own
    floor = session_id_floor(since - store.longest_ended())
    ceiling = session_id_floor(until + _ID_AHEAD)
    seen = set()
    for summary in store.summaries(floor=floor, before=ceiling, errors=errors):
        if summary.start >= end or (summary.end is not None and summary.end < start):
            continue
        seen.add(summary.id)
        summary.host = own
        yield summary
    for session in actives.values():
        if session.id not in seen and session.started_at < until:
            summary = Summary.of(session)
            summary.host = own
            yield summary


def sessions_that_ran(
    store: SessionStore,
    since: datetime | None,
    until: datetime | None,
    errors: list[StorageError] | None = None,
) -> Iterator[Session]:
    """The sessions that ran at some moment of ``[since, until)`` (every one,
    without a range), oldest first: one forward pass from the longest ended
    session before ``since`` -- for an export."""
    floor = session_id_floor(since - store.longest_ended()) if since is not None else None
    for session in store.oldest_first(floor=floor, errors=errors):
        if until is not None and session.started_at >= until:
            return
        if since is None or session.ended_at is None or session.ended_at >= since:
            yield session


def abandon_strays(store: SessionStore, pointed: set[str]) -> list[Session]:
    """Abandon (``crash_recovery``) any recent active record that is not the
    active session of its scope (``pointed``): invariant 1 repaired after
    whatever left one behind. Dated at its last activity, the last sign of it."""
    orphans = [
        s.abandoned(EndReason.CRASH_RECOVERY, s.last_activity_at) for s in _stray_actives(store, pointed)
    ]
    if orphans:
        store.commit(tuple(orphans), events=tuple((EventKind.ENDED, orphan) for orphan in orphans))
        for orphan in orphans:
            log.warning("session %s was active beside the active one; abandoned it", orphan.id)
    return orphans


def _stray_actives(store: SessionStore, pointed: set[str], limit: int = ORPHAN_SCAN) -> Iterator[Session]:
    """Active records among the ``limit`` newest that are not the active
    session of their scope (``pointed``): what a crashed older writer or a
    restored backup can leave behind."""
    for index, session in enumerate(store.newest_first(errors=[])):
        if index >= limit:
            return
        if session.is_active and session.id not in pointed:
            yield session
