"""The model: ids, validation, transitions, record encoding."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import InvalidSessionIdError, Session, SessionStatus, StorageError
from agent.details import NO_DETAILS, Details, GitState, Host
from agent.record import Summary, decode_record, encode_record, summarize_record
from agent.session import MAX_IDLE_SECONDS, MAX_PID, EndReason, utc_now
from agent.session_id import new_session_id, parse_session_id, session_id_floor

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_new_ids_are_uuid7_and_strictly_increasing_within_one_millisecond() -> None:
    ids = [new_session_id(T0) for _ in range(5000)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert all(str(uuid.UUID(i)) == i for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_stay_increasing_when_the_clock_steps_back() -> None:
    later = new_session_id(T0 + timedelta(hours=1))
    assert new_session_id(T0) > later


def test_id_floor_sorts_before_every_id_of_its_millisecond_and_after_earlier_ones() -> None:
    now = utc_now()
    floor = session_id_floor(now)
    assert session_id_floor(now - timedelta(milliseconds=1)) < floor
    assert floor <= new_session_id(now)


@pytest.mark.parametrize(
    "spelling",
    [
        "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "0193A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B",
        "{0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}",
        "urn:uuid:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        " 0193a1b2c3d47e5f8a9b0c1d2e3f4a5b\n",
    ],
)
def test_any_uuid_spelling_is_accepted_and_canonicalised(spelling: str) -> None:
    assert parse_session_id(spelling) == "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def test_a_version_4_uuid_is_accepted_on_lookup() -> None:
    v4 = str(uuid.uuid4())
    assert parse_session_id(v4) == v4


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("../x", "not a UUID"),
        ("x" * 5000, "5000 characters"),
        ("not-a-uuid", "not a UUID"),
        ("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5\x00", "not a UUID"),
        ("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/..", "not a UUID"),
    ],
)
def test_malformed_ids_are_rejected_with_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidSessionIdError, match=reason):
        parse_session_id(raw)


def test_a_new_session_is_active_and_consistent() -> None:
    s = Session.begin(T0)
    assert s.status is SessionStatus.ACTIVE
    assert s.ended_at is None
    assert s.started_at == s.last_activity_at == T0
    assert s.memory_count == 0


def test_completion_and_abandonment_set_the_end() -> None:
    s = Session.begin(T0)
    done = s.completed(EndReason.CLI, T0 + timedelta(minutes=5))
    assert (done.status, done.ended_at, done.end_reason) == (
        SessionStatus.COMPLETED,
        T0 + timedelta(minutes=5),
        EndReason.CLI,
    )
    gone = s.abandoned(EndReason.IDLE, T0 + timedelta(minutes=7))
    assert (gone.status, gone.ended_at, gone.end_reason) == (
        SessionStatus.ABANDONED,
        T0 + timedelta(minutes=7),
        EndReason.IDLE,
    )


def test_an_end_before_the_start_is_clamped_to_the_start() -> None:
    done = Session.begin(T0).completed(EndReason.FILE, T0 - timedelta(hours=1))
    assert done.ended_at == T0


@pytest.mark.parametrize("terminate", ["completed", "abandoned"])
def test_a_terminated_session_never_changes_again(terminate: str) -> None:
    ended = getattr(Session.begin(T0), terminate)(EndReason.CLI, T0 + timedelta(seconds=1))
    with pytest.raises(ValueError, match="already"):
        ended.completed(EndReason.CLI, T0 + timedelta(hours=1))
    with pytest.raises(ValueError, match="already"):
        ended.abandoned(EndReason.IDLE, T0 + timedelta(hours=1))
    with pytest.raises(ValueError, match=ended.status.value):
        ended.with_activity(T0 + timedelta(hours=1))


def test_activity_never_moves_backwards() -> None:
    s = Session.begin(T0).with_activity(T0 + timedelta(minutes=3))
    assert s.with_activity(T0 + timedelta(minutes=1)).last_activity_at == T0 + timedelta(minutes=3)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"started_at": datetime(2026, 1, 1)}, "timezone-aware UTC"),
        ({"started_at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1)))}, "UTC"),
        ({"ended_at": T0}, "status active with ended_at"),
        ({"status": SessionStatus.COMPLETED}, "status completed with ended_at None"),
        ({"memory_count": -1}, "not a count"),
        ({"id": "../x"}, "not a UUID"),
        ({"id": "0193A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"}, "canonical"),
        ({"last_activity_at": T0 - timedelta(seconds=1)}, "before start"),
        ({"end_reason": EndReason.CLI}, "status active with end_reason cli"),
        ({"owner_pid": 0}, "not a process id"),
        ({"owner_pid": True}, "not a process id"),
        ({"owner_pid": 1 << 23}, "not a process id"),
        ({"idle_timeout": 0}, "idle_timeout 0"),
        ({"idle_timeout": 400 * 86400}, "idle_timeout"),
        ({"idle_grace": 5}, "idle_grace 5 is not a number of seconds up to the idle timeout"),
        ({"idle_timeout": 60, "idle_grace": 61}, "idle_grace 61"),
    ],
)
def test_invalid_sessions_cannot_be_built(changes: dict[str, object], problem: str) -> None:
    fields: dict[str, object] = {
        "id": new_session_id(T0),
        "started_at": T0,
        "ended_at": None,
        "status": SessionStatus.ACTIVE,
        "memory_count": 0,
        "last_activity_at": T0,
    }
    fields.update(changes)
    with pytest.raises(ValueError, match=problem):
        Session(**fields)  # type: ignore[arg-type]


def test_json_shape() -> None:
    s = Session.begin(T0, owner_pid=42, idle_timeout=1800, idle_grace=60)
    s = s.abandoned(EndReason.OWNER_EXITED, T0 + timedelta(seconds=90))
    assert s.to_dict() == {
        "id": s.id,
        "status": "abandoned",
        "started_at": "2026-11-24T09:00:00Z",
        "ended_at": "2026-11-24T09:01:30Z",
        "memory_count": 0,
        "last_activity_at": "2026-11-24T09:00:00Z",
        "end_reason": "owner_exited",
        "owner_pid": 42,
        "idle_timeout": 1800,
        "idle_grace": 60,
        "scope": "default",
        "cwd": None,
        "project": None,
        "git": None,
        "tool": None,
        "external_id": None,
        "parent": None,
        "tags": [],
        "title": None,
        "labels": {},
        "host": None,
        "active_seconds": 90.0,  # the start, then the end 90 s later: one gap, within 15 minutes
        "activity": [["2026-11-24T09:00:00Z", "2026-11-24T09:01:30Z"]],
        "activity_gap": 900,
    }
    assert Session.from_dict(s.to_dict()) == s


def test_a_reply_of_an_older_daemon_without_the_new_fields_still_reads() -> None:
    s = Session.begin(T0).completed(EndReason.CLI, T0 + timedelta(seconds=5))
    old = {
        k: v
        for k, v in s.to_dict().items()
        if k in ("id", "status", "started_at", "ended_at", "memory_count", "last_activity_at")
    }
    old["end_reason"] = None
    with pytest.raises(ValueError, match="end_reason"):
        Session.from_dict(old)  # an ended session must say why: a malformed reply
    del old["end_reason"]
    old["status"] = "active"
    old["ended_at"] = None
    assert Session.from_dict(old).end_reason is None


moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@given(
    start=moments,
    activity=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
    end=st.one_of(st.none(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))),
    abandon=st.booleans(),
    count=st.integers(min_value=0, max_value=2**63),
    reason=st.sampled_from(EndReason),
    owner=st.one_of(st.none(), st.integers(min_value=1, max_value=MAX_PID)),
    idle=st.one_of(st.none(), st.integers(min_value=1, max_value=MAX_IDLE_SECONDS)),
    grace=st.floats(min_value=0, max_value=1),
    scope=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"),
)
def test_records_round_trip(
    start: datetime,
    activity: timedelta,
    end: timedelta | None,
    abandon: bool,
    count: int,
    reason: EndReason,
    owner: int | None,
    idle: int | None,
    grace: float,
    scope: str,
) -> None:
    s = Session.begin(
        start, owner_pid=owner, idle_timeout=idle, idle_grace=int((idle or 0) * grace), scope=scope
    )
    s = s.with_activity(start + activity).replace(memory_count=count)
    if end is not None:
        moment = s.last_activity_at + end
        s = s.abandoned(reason, moment) if abandon else s.completed(reason, moment)
    assert decode_record(s.id.encode(), encode_record(s)) == s
    assert _same(summarize_record(s.id.encode(), encode_record(s)), Summary.of(s))


def _same(a: Summary, b: Summary) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in Summary.__slots__)


def test_a_records_summary_says_what_the_whole_record_says() -> None:
    """What a report reads in brief is what the record holds, every version."""
    details = Details(project="engine", tool="nvim", tags=["review", "bugfix"], title="t", cwd="/x")
    s = Session.begin(T0, scope="nvim-7", details=details).with_activity(T0 + timedelta(minutes=10))
    for session in (s, s.completed(EndReason.CLI, T0 + timedelta(hours=1)), s.replace(activity=None)):
        raw = encode_record(session)
        assert _same(
            summarize_record(session.id.encode(), raw), Summary.of(decode_record(session.id.encode(), raw))
        )
    old = _v3(s.completed(EndReason.CLI, T0 + timedelta(hours=1)))
    assert _same(summarize_record(s.id.encode(), old), Summary.of(decode_record(s.id.encode(), old)))
    v1 = struct.pack("<BBqqqQ", 1, 2, 1_000_000, 3_000_000, 2_000_000, 7)
    key = b"01a20d59-6bfa-78e2-8256-6ac15137b415"
    assert _same(summarize_record(key, v1), Summary.of(decode_record(key, v1)))
    with pytest.raises(StorageError, match="is corrupt"):
        summarize_record(s.id.encode(), encode_record(s)[:-3])


def test_a_version_1_record_reads_as_ended_for_an_unknown_reason() -> None:
    """Stores written before end reasons existed keep working, unmigrated."""
    ended = struct.pack("<BBqqqQ", 1, 2, 1_000_000, 3_000_000, 2_000_000, 7)
    s = decode_record(b"01a20d59-6bfa-78e2-8256-6ac15137b415", ended)
    assert (s.status, s.end_reason, s.memory_count) == (SessionStatus.COMPLETED, EndReason.UNKNOWN, 7)
    assert (s.owner_pid, s.idle_timeout, s.idle_grace) == (None, None, 0)
    active = struct.pack("<BBqqqQ", 1, 1, 1_000_000, -1, 2_000_000, 0)
    assert decode_record(b"01a20d59-6bfa-78e2-8256-6ac15137b415", active).end_reason is None


def test_records_before_scopes_belong_to_the_default_scope() -> None:
    """Version 1 and 2 records (stores written before scopes) read unmigrated."""
    v1 = struct.pack("<BBqqqQ", 1, 1, 1_000_000, -1, 2_000_000, 0)
    v2 = struct.pack("<BBqqqQBIII", 2, 3, 1_000_000, 3_000_000, 2_000_000, 0, 6, 42, 60, 5)
    key = b"01a20d59-6bfa-78e2-8256-6ac15137b415"
    assert decode_record(key, v1).scope == decode_record(key, v2).scope == "default"
    assert decode_record(key, v2).end_reason is EndReason.OWNER_EXITED
    named = Session.begin(T0, scope="nvim-4242").replace(activity=None)
    assert encode_record(named)[0] == 4
    assert encode_record(named).endswith(b"\x09nvim-4242")  # no sections: nothing after the scope
    assert encode_record(Session.begin(T0).replace(activity=None)).endswith(b"\x00")  # the default: no name


def _v3(session: Session) -> bytes:
    """``session`` as a version 3 record (scopes, no details or activity)."""
    return b"\x03" + encode_record(session.replace(details=NO_DETAILS, activity=None))[1:]


def test_records_before_details_read_without_them_and_without_active_time() -> None:
    s = Session.begin(T0, scope="nvim-1").completed(EndReason.CLI, T0 + timedelta(minutes=5))
    old = decode_record(s.id.encode(), _v3(s))
    assert old == s.replace(activity=None)
    assert old.details == NO_DETAILS
    assert old.active_seconds is None
    assert old.to_dict()["active_seconds"] is None


def test_every_field_of_a_session_survives_its_record() -> None:
    details = Details(
        cwd="/home/ada/src/engine",
        project="engine",
        git=GitState("/home/ada/src/engine", "main", "0" * 40, worktree=False),
        tool="nvim",
        external_id="claude-4c1f",
        parent="0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        tags=["review", "bugfix"],
        title="the parser's error messages",
        labels={"ticket": "ENG-42", "note": "two words"},
        host=Host("ada-laptop", "f" * 32),
    )
    s = Session.begin(T0, scope="nvim-7", details=details)
    s = s.with_activity(T0 + timedelta(minutes=10)).with_activity(T0 + timedelta(hours=1))
    s = s.completed(EndReason.CLI, T0 + timedelta(hours=1, minutes=5))
    assert decode_record(s.id.encode(), encode_record(s)) == s
    assert Session.from_dict(s.to_dict()) == s
    detached = s.replace(details=details.replace(git=GitState("/r", None, "abc", worktree=True), host=None))
    assert decode_record(s.id.encode(), encode_record(detached)) == detached


@pytest.mark.parametrize(
    ("mangle", "problem"),
    [
        (lambda b: b"", "empty record"),
        (lambda b: b"\x09" + b[1:], "unknown record version 9"),
        (lambda b: b[:-1], "do not hold a version 3 record"),  # (all on version 3 records)
        (lambda b: b + b"x", "do not hold a version 3 record"),
        (lambda b: b[:-1] + b"\x03ab", "do not hold a version 3 record"),
        (lambda b: b[:-1] + b"\x02a/", "scope 'a/': a scope name cannot contain '/'"),
        (lambda b: b[:-1] + b"\x02..", "a scope name starts with a letter or a digit"),
        (lambda b: b[:-1] + b"\x01\xff", "codec can't decode"),
        (lambda b: b"\x02" + b[1:-1] + b"\x00", "bytes, expected 47 for version 2"),
        (lambda b: b[:1] + b"\x07" + b[2:], "unknown status code 7"),
        (lambda b: b[:1] + b"\x02" + b[2:], "status completed with ended_at None"),
        (lambda b: b[:34] + b"\x63" + b[35:], "unknown end reason code 99"),
        (lambda b: b[:34] + b"\x01" + b[35:], "status active with end_reason"),
    ],
)
def test_corrupt_records_raise_storage_error_naming_the_key(mangle: object, problem: str) -> None:
    s = Session.begin(T0)
    raw = mangle(_v3(s))  # type: ignore[operator]
    with pytest.raises(StorageError, match=f"session record {s.id} is corrupt: .*{problem}"):
        decode_record(s.id.encode(), raw)


@pytest.mark.parametrize(
    ("mangle", "problem"),
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x63\x00", "unknown section 99"),
        (lambda b: b + b"\x01\x01a", "section 1 twice"),
        (lambda b: b + b"\x02\x02\xff\xfe", "codec can't decode"),
        (lambda b: b + b"\x04\x03a\nb", "one line of printable text"),
        (lambda b: b + b"\x07\x03\x01\x00\x00", "trailing bytes in section 7"),
        (lambda b: b + b"\x03\x05\x00\x09", "truncated"),
    ],
)
def test_corrupt_sections_of_a_record_are_reported(mangle: object, problem: str) -> None:
    s = Session.begin(T0, details=Details(cwd="/w"))
    raw = mangle(encode_record(s))  # type: ignore[operator]
    with pytest.raises(StorageError, match=f"session record {s.id} is corrupt: .*{problem}"):
        decode_record(s.id.encode(), raw)


def test_a_record_under_a_key_that_is_not_a_uuid_is_corrupt() -> None:
    s = Session.begin(T0)
    with pytest.raises(StorageError, match="session record junk is corrupt"):
        decode_record(b"junk", encode_record(s))


@given(st.uuids(), st.sampled_from(["{}", "urn:uuid:{}", "{{{}}}", "UPPER", "HEX"]))
def test_every_uuid_spelling_parses_to_what_the_uuid_module_says(value: uuid.UUID, spelling: str) -> None:
    text = str(value)
    if spelling == "UPPER":
        raw = text.upper()
    elif spelling == "HEX":
        raw = value.hex
    else:
        raw = spelling.format(text)
    assert parse_session_id(raw) == str(uuid.UUID(raw))


@pytest.mark.parametrize(
    "raw", ["+" + "0" * 31, "0x" + "0" * 30, "0_" + "0" * 30, "g" * 32, "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5"]
)
def test_what_int_would_accept_is_not_a_uuid(raw: str) -> None:
    with pytest.raises(InvalidSessionIdError):
        parse_session_id(raw)
