"""Sessions as text for people and as JSON for programs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from agent.scope import DEFAULT_SCOPE
from agent.session import Session
from agent.timespec import format_duration, format_local

__all__ = ["session_detail", "session_table", "status_text"]


def _duration(session: Session, now: datetime) -> str:
    end = session.ended_at or now
    text = format_duration(end - session.started_at)
    return text if session.ended_at else text + " so far"


def session_detail(session: Session, now: datetime) -> str:
    rows = [
        ("id", session.id),
        ("scope", session.scope),
        ("status", session.status.value),
        ("started", format_local(session.started_at)),
        ("ended", format_local(session.ended_at) if session.ended_at else "-"),
        ("duration", _duration(session, now)),
        ("end reason", session.end_reason.value if session.end_reason else "-"),
        ("last activity", format_local(session.last_activity_at)),
        ("owner", f"process {session.owner_pid}" if session.owner_pid else "-"),
        ("idle timeout", _idle_rule(session)),
        ("active", _active(session)),
        ("memories", str(session.memory_count)),
        *_what(session),
    ]
    return _rows(rows, 15)


def _active(session: Session) -> str:
    if session.active_seconds is None:
        return "- (recorded before active time was kept)"
    return format_duration(timedelta(seconds=session.active_seconds))  # cut as durations are: never above one


def _what(session: Session) -> list[tuple[str, str]]:
    """The rows of what the session was: every field, ``-`` when unset."""
    d = session.details
    git = "-"
    if d.git is not None:
        head = d.git.branch or (f"detached at {d.git.commit[:12]}" if d.git.commit else "unknown head")
        git = f"{head} in {d.git.root}" + (" (linked worktree)" if d.git.worktree else "")
    host = "-" if d.host is None else d.host.hostname
    rows = [
        ("project", d.project or "-"),
        ("directory", d.cwd or "-"),
        ("git", git),
        ("tool", d.tool or "-"),
        ("external id", d.external_id or "-"),
        ("parent", d.parent or "-"),
        ("title", d.title or "-"),
        ("tags", ", ".join(d.tags) or "-"),
        ("host", host),
    ]
    rows += [(f"label {key}", value) for key, value in d.labels]
    return rows


def _idle_rule(session: Session) -> str:
    if session.idle_timeout is None:
        return "-"
    text = format_duration(timedelta(seconds=session.idle_timeout))
    if session.idle_grace:
        text += f" (grace {format_duration(timedelta(seconds=session.idle_grace))})"
    return text


def session_table(
    sessions: Iterable[Session], now: datetime, *, with_scope: bool = False, with_host: bool = False
) -> str:
    """A table; ``with_scope`` adds a SCOPE column (listings of every scope),
    ``with_host`` a HOST column (listings over machines). The last columns
    say how much of it was worked and on what."""
    sessions = list(sessions)
    if with_host:
        named = [("-" if s.details.host is None else s.details.host.hostname) for s in sessions]
        hosts_width = max([len("HOST"), *map(len, named)])
        table = session_table(sessions, now, with_scope=with_scope).split("\n")
        lines = [f"{'HOST':<{hosts_width}}  {table[0]}"]
        lines += [f"{host:<{hosts_width}}  {row}" for host, row in zip(named, table[1:], strict=True)]
        return "\n".join(lines)
    width = max([len("SCOPE"), *(len(s.scope) for s in sessions)]) if with_scope else 0
    scope_head = f"{'SCOPE':<{width}}  " if with_scope else ""
    durations = [_duration(s, now) for s in sessions]
    actives = ["-" if s.active_seconds is None else _active(s) for s in sessions]
    lasting = max([len("DURATION"), *map(len, durations)])
    worked = max([len("ACTIVE"), *map(len, actives)])
    lines = [
        f"{'ID':<36}  {scope_head}{'STATUS':<9}  {'REASON':<14}  {'STARTED':<19}  "
        f"{'DURATION':<{lasting}}  {'ACTIVE':<{worked}}  PROJECT"
    ]
    for s, duration, active in zip(sessions, durations, actives, strict=True):
        reason = s.end_reason.value if s.end_reason else "-"
        started = format_local(s.started_at)
        scope = f"{s.scope:<{width}}  " if with_scope else ""
        lines.append(
            f"{s.id:<36}  {scope}{s.status.value:<9}  {reason:<14}  {started:<19}  "
            f"{duration:<{lasting}}  {active:<{worked}}  {s.details.project or '-'}"
        )
    return "\n".join(lines)


def _rows(rows: Iterable[tuple[str, str]], width: int) -> str:
    return "\n".join(f"{name + ':':<{width}}{value}" for name, value in rows)


def status_text(report: dict[str, Any], now: datetime, scope: str = DEFAULT_SCOPE) -> str:
    """The ``status`` report (as the daemon or the embedded backend made it)
    for people: ``scope``'s session as the current one, then the others."""
    daemon = report.get("daemon") or {}
    paths = report.get("paths") or {}
    if daemon.get("running"):
        uptime = format_duration(timedelta(seconds=float(daemon.get("uptime_seconds", 0))))
        mib = int(daemon.get("rss_bytes", 0)) / (1 << 20)
        span = format_duration(timedelta(seconds=float(daemon.get("cpu_percent_span_seconds", 0))))
        state = (
            f"running (pid {daemon.get('pid')}, up {uptime}, {mib:.1f} MiB RSS, "
            f"{daemon.get('cpu_percent', 0):.2f}% CPU over the {span} since start-up)"
        )
    else:
        state = "not running (commands open the store directly)"
    rows = [("daemon", state)]
    if daemon.get("running"):
        rows.append(("version", str(daemon.get("version"))))
    rows += [
        ("data dir", str(paths.get("data_dir"))),
        ("store", str(paths.get("store")) + (" (none yet)" if report.get("store_exists") is False else "")),
        ("current file", str(paths.get("current_file"))),
    ]
    socket = str(paths.get("socket"))
    rows.append(("socket", socket + (" (from systemd)" if daemon.get("socket_activated") else "")))
    watcher = report.get("watcher")
    if watcher:
        step, debounce = watcher.get("step_ms"), watcher.get("debounce_ms")
        rows.append(("watcher", f"step {step} ms, debounce {debounce} ms"))
    if scope != DEFAULT_SCOPE:
        rows.append(("scope", scope))
    current = report.get("current")
    if current:
        rows.append(("current", _active_text(current, now)))
        ends = _ends_text(current, report.get("idle_ends_in_seconds"))
        if ends:
            rows.append(("ends", ends))
    else:
        rows.append(("current", "none"))
    others = [e for e in report.get("scopes") or () if e.get("scope") != scope and e.get("current")]
    if others:
        rows.append(("other scopes", f"{len(others)} with an active session"))
    rows += _event_rows(report)
    text = _rows(rows, 14)
    width = max((len(str(e["scope"])) for e in others), default=0)
    for entry in others:
        line = f"  {entry['scope']:<{width}}  {_active_text(entry['current'], now)}"
        ends = _ends_text(entry["current"], entry.get("idle_ends_in_seconds"))
        text += "\n" + line + (f"; ends {ends}" if ends else "")
    return text


def _event_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The event log, its subscribers, and each hook: where it is, how its
    last run went, its last failure."""
    rows: list[tuple[str, str]] = []
    events = report.get("events")
    if isinstance(events, dict):
        last, first = events.get("last"), events.get("first")
        kept = "none kept" if not last or first > last else f"{first} to {last} kept"
        line = f"last seq {last} ({kept})"
        if events.get("subscribers") is not None:
            line += f"; {events['subscribers']} subscriber(s)"
        rows.append(("events", line))
    if "sync" in report:
        rows.append(("sync", sync_line(report["sync"])))
    hooks = report.get("hooks")
    if not isinstance(hooks, dict):
        return rows
    if hooks.get("problem"):
        rows.append(("hooks", f"not loaded: {hooks['problem']}"))
    for hook in hooks.get("hooks") or ():
        if hook.get("cursor") is None:
            rows.append((f"hook {hook['name']}", "not started yet (the daemon starts it)"))
            continue
        line = f"at seq {hook['cursor']} ({hook['behind']} behind), {hook['runs']} run(s)"
        if hook.get("skipped"):
            line += f", {hook['skipped']} skipped as too old"
        run = hook.get("last_run")
        if run:
            line += f"; last run {run['at']} for seq {run['seq']}"
        failure = hook.get("last_failure")
        if failure:
            line += f"; last failure {failure['at']} (seq {failure['seq']}): {failure['message']}"
        rows.append((f"hook {hook['name']}", line))
    return rows


def sync_line(sync: dict[str, Any] | None) -> str:
    """``status``'s one line on sync (``agent.sync_status``'s report)."""
    if not sync:
        return "off (no [sync] dir in config.toml)"
    ship = sync.get("ship") or {}
    hosts = sync.get("hosts") or []
    if ship.get("problem"):
        shipping = f"not shipping: {ship['problem']}"
    elif ship.get("behind") is None:
        shipping = "nothing shipped yet"
    elif ship["behind"]:
        shipping = f"{ship['behind']} event(s) to ship"
    else:
        shipping = "all shipped"
    pending = sum(h.get("pending") or 0 for h in hosts)
    others = f"{len(hosts)} other host(s)" + (f", {pending} segment(s) to take in" if pending else "")
    return f"as {sync.get('host')} in {sync.get('dir')}: {shipping}; {others} (see `sync status`)"


def sync_text(sync: dict[str, Any], now: datetime) -> str:
    """``sync status`` for people."""
    ship = sync.get("ship") or {}
    if ship.get("problem"):
        shipping = f"nothing shipped: {ship['problem']}"
    elif ship.get("cursor") is None:
        shipping = "nothing shipped yet"
    else:
        shipping = (
            f"shipped up to event {ship['cursor']} of {ship['last_event']}"
            + (f" ({ship['behind']} to ship)" if ship.get("behind") else "")
            + (
                f"; segment {ship['segment']} written {_ago(ship.get('written_at'), now)}"
                if ship.get("segment")
                else ""
            )
        )
    rows = [
        ("sync dir", str(sync.get("dir"))),
        ("this host", f"{sync.get('host')}: {shipping}"),
        ("left out", ", ".join(sync.get("omit") or ()) or "nothing"),
    ]
    lines = [_rows(rows, 11)]
    hosts = sync.get("hosts") or []
    lines.append(f"other hosts: {len(hosts) or 'none yet'}")
    for host in hosts:
        if host.get("newest_segment") is None:
            newest = "nothing taken in yet"
        else:
            written = _ago(host.get("newest_written_at"), now)
            newest = f"newest segment {host['newest_segment']} (written {written})"
        line = f"  {host['host']}: {newest}; {host.get('taken_in', 0)} segment(s) taken in"
        if host.get("folder") is None:
            line += "; its folder is gone"
        elif host.get("pending"):
            line += f", {host['pending']} to take in"
        lines.append(line)
        if host.get("conflict_copies"):
            lines.append(f"    conflict copies passed over: {', '.join(host['conflict_copies'])}")
        if host.get("stray_files"):
            lines.append(f"    other files passed over: {', '.join(host['stray_files'])}")
        if host.get("claimed_elsewhere"):
            lines.append(f"    {host['claimed_elsewhere']} session(s) left out: another host had them first")
        lines.extend(f"    skipped: {problem}" for problem in host.get("problems") or ())
    lines.extend(f"note: {note}" for note in sync.get("notes") or ())
    return "\n".join(lines)


def _ago(moment: object, now: datetime) -> str:
    if not isinstance(moment, str):
        return "-"
    when = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return f"{format_local(when)}, {format_duration(max(timedelta(0), now - when))} ago"


def _active_text(session: dict[str, Any], now: datetime) -> str:
    started = datetime.fromisoformat(session["started_at"])
    return f"{session['id']} (active for {format_duration(now - started)})"


def _ends_text(session: dict[str, Any], idle: object) -> str:
    rules = []
    if session.get("owner_pid"):
        rules.append(f"when process {session['owner_pid']} exits")
    if isinstance(idle, int | float):
        rules.append(f"if still idle in {format_duration(timedelta(seconds=float(idle)))}")
    return "; ".join(rules)
