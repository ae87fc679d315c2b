"""``session-agent doctor``: look at the store, the files and the snapshots,
change nothing, and say what was found.

The store is opened read-only (``open_db_read_only``), so the doctor runs
beside a daemon and sees the store as it is on disk. It checks that the
store opens, that every record decodes, that each scope's active pointer
names an active session of that scope, that each scope's current file
agrees with it, and that the snapshots open. A *problem* makes the exit
code 5; a *note* is something the daemon mends by itself.
"""

from __future__ import annotations

from agent.current_file import CurrentFile, FileKind
from agent.database import holds_a_store, open_db_read_only
from agent.errors import SessionError, StorageError
from agent.file_edits import EditKind, parse_edit
from agent.layout import scope_dir
from agent.paths import Paths
from agent.scope import DEFAULT_SCOPE, scope_problem
from agent.session import Session, SessionStatus
from agent.snapshots import Snapshots, snapshot_time
from agent.store import SessionStore
from agent.store_keys import ScopeKeys
from agent.values import Value

__all__ = ["Finding", "examine", "healthy"]

OK, NOTE, PROBLEM = "ok", "note", "problem"
_SHOWN_ERRORS = 20


class Finding(Value):
    __slots__ = ("level", "text")
    level: str  # ok, note or problem
    text: str

    def __init__(self, level: str, text: str) -> None:
        self._set(level=level, text=text)

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level, "text": self.text}


def examine(paths: Paths) -> list[Finding]:
    """Everything the doctor looks at, in order."""
    if not holds_a_store(paths.db):
        return [Finding(NOTE, f"there is no store at {paths.db} yet: nothing has been recorded")]
    findings: list[Finding] = []
    try:
        store = SessionStore(open_db_read_only(paths.db), read_only=True)
    except SessionError as exc:
        findings.append(Finding(PROBLEM, str(exc)))
    else:
        try:
            findings += _store_findings(store, paths)
        finally:
            store.close()
    return findings + _snapshot_findings(paths)


def _store_findings(store: SessionStore, paths: Paths) -> list[Finding]:
    findings: list[Finding] = []
    errors: list[StorageError] = []
    sessions = list(store.newest_first(errors=errors))
    counts = {status: sum(s.status is status for s in sessions) for status in SessionStatus}
    shown = ", ".join(f"{n} {status.value}" for status, n in counts.items() if n)
    findings.append(Finding(OK, f"the store opens: {len(sessions)} sessions ({shown or 'none'})"))
    for error in errors[:_SHOWN_ERRORS]:
        findings.append(Finding(PROBLEM, f"a record does not decode: {error}"))
    if len(errors) > _SHOWN_ERRORS:
        findings.append(
            Finding(PROBLEM, f"... and {len(errors) - _SHOWN_ERRORS} more records that do not decode")
        )
    by_id = {s.id: s for s in sessions}
    pointed: dict[str, Session] = {}
    for key, value in store.meta_with_prefix(ScopeKeys.ACTIVE):
        scope = ScopeKeys.scope_of(key)
        session_id = value.decode("ascii", "replace")
        session = by_id.get(session_id)
        if session is None or not session.is_active or session.scope != scope:
            what = (
                "no session"
                if session is None
                else f"a {session.status.value} session of scope {session.scope}"
            )
            findings.append(Finding(PROBLEM, f"scope {scope}'s active session {session_id} is {what}"))
        else:
            pointed[scope] = session
    strays = [s for s in sessions if s.is_active and pointed.get(s.scope) is not s]
    for stray in strays:
        findings.append(
            Finding(
                NOTE,
                f"session {stray.id} is active beside its scope's active session; "
                "the daemon abandons it (crash_recovery) at its next start",
            )
        )
    if not errors and not strays:
        findings.append(Finding(OK, f"every record decodes; scopes with an active session: {len(pointed)}"))
    findings += _file_findings(paths, pointed, by_id, store)
    return findings


def _scopes(paths: Paths, pointed: dict[str, Session]) -> list[str]:
    try:
        named = [p.name for p in (paths.scopes_dir).iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        named = []
    return sorted({DEFAULT_SCOPE, *pointed, *(n for n in named if scope_problem(n) is None)})


def _file_findings(
    paths: Paths, pointed: dict[str, Session], by_id: dict[str, Session], store: SessionStore
) -> list[Finding]:
    findings = []
    agreeing = 0
    for scope in _scopes(paths, pointed):
        file = CurrentFile(scope_dir(paths.data_dir, scope))
        try:
            observed = file.observe()
        except SessionError as exc:
            findings.append(Finding(PROBLEM, str(exc)))
            continue
        active = pointed.get(scope)
        if observed.kind is FileKind.MISSING:
            if active is None:
                agreeing += 1
            else:
                findings.append(
                    Finding(NOTE, f"{file.path} is missing: the daemon takes that as the end of {active.id}")
                )
            continue
        if observed.kind is not FileKind.REGULAR:
            findings.append(Finding(PROBLEM, f"{file.path} is a {observed.kind.value}, not a file"))
            continue
        edit = parse_edit(observed.content)
        if edit.kind is EditKind.NAMES and active is not None and edit.session_id == active.id:
            agreeing += 1
        elif edit.kind is EditKind.NAMES and edit.session_id is not None and edit.session_id not in by_id:
            lost = store.lost(edit.session_id)
            level, why = (
                (PROBLEM, "newer than any the store holds: it lost writes") if lost else (NOTE, "unknown")
            )
            findings.append(Finding(level, f"{file.path} names session {edit.session_id}, {why}"))
        else:
            findings.append(Finding(NOTE, f"{file.path} holds an edit not applied yet ({edit.kind.value})"))
    findings.append(Finding(OK, f"current files that agree with the store: {agreeing}"))
    return findings


def _snapshot_findings(paths: Paths) -> list[Finding]:
    snapshots = Snapshots(paths.data_dir).all()
    if not snapshots:
        return [
            Finding(NOTE, f"no snapshots in {paths.data_dir / 'snapshots'} yet (see config.toml [snapshots])")
        ]
    findings = []
    for snapshot in snapshots:
        taken = snapshot_time(snapshot)
        try:
            store = SessionStore(open_db_read_only(snapshot), read_only=True)
            try:
                errors: list[StorageError] = []
                count = sum(1 for _ in store.newest_first(errors=errors))
            finally:
                store.close()
        except SessionError as exc:
            findings.append(Finding(PROBLEM, f"snapshot {snapshot.name} cannot be read: {exc}"))
            continue
        level = PROBLEM if errors else OK
        broken = f", {len(errors)} records that do not decode" if errors else ""
        findings.append(
            Finding(level, f"snapshot {snapshot.name} ({taken:%Y-%m-%d %H:%M} UTC): {count} sessions{broken}")
        )
    return findings


def healthy(findings: list[Finding]) -> bool:
    return all(f.level != PROBLEM for f in findings)
