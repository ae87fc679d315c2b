"""What a session was: where, on what, driven by which tool.

``Details`` travels with a session from its start: set by whoever starts it
(the CLI, a file edit, the socket, the API), completed by the agent (the
project and the git state derived from ``cwd``, this host), and changed
later only by ``tag``/``set`` -- never its times. Every field is optional;
a session from before this release has none.

Limits keep one session's record small and every field printable on one
line: no control characters anywhere, each string capped, at most
``MAX_TAGS`` tags and ``MAX_LABELS`` labels, ``MAX_LABEL_BYTES`` for the
labels in all. Over a limit is an error naming the field, never a
truncation.
"""

from __future__ import annotations

import re

from agent.errors import InvalidArgumentError
from agent.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from agent.session import Session

__all__ = [
    "ANY",
    "GIVEN_FIELDS",
    "MAX_LABELS",
    "MAX_LABEL_BYTES",
    "MAX_TAGS",
    "Details",
    "DetailsChange",
    "GitState",
    "Host",
    "SessionFilter",
]

MAX_PATH = 4096
MAX_NAME = 128  # project, tool, external id, tag, branch, a label's key
MAX_TITLE = 256
MAX_TAGS = 32
MAX_LABELS = 32
MAX_LABEL_BYTES = 4096  # keys and values of one session's labels, UTF-8
# What a start may give (the rest -- git, host -- the agent finds out).
GIVEN_FIELDS = ("cwd", "project", "tool", "external_id", "parent", "tags", "title", "labels")


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _problem(value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value:
        return "must not be empty"
    if value.isascii():  # the common case, without a regex (taking in 100,000 sessions checks 2 million)
        if len(value) > limit:
            return f"is longer than {limit} bytes"
        return None if value.isprintable() else "must be one line of printable text (no control characters)"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid text"
    if size > limit:
        return f"is longer than {limit} bytes"
    if _CONTROL.search(value):
        return "must be one line of printable text (no control characters)"
    return None


def check_text(field: str, value: object, limit: int = MAX_NAME) -> str:
    """``value`` if it is a valid text for ``field``; else ``InvalidArgumentError``
    naming the field."""
    problem = _problem(value, limit)
    if problem is not None:
        raise InvalidArgumentError(f"{field} {problem}")
    assert isinstance(value, str)
    return value


def check_tag(value: object) -> str:
    tag = check_text("a tag", value)
    if tag[0] in "+-" or any(ch.isspace() or ch == "," for ch in tag):
        raise InvalidArgumentError(f"tag {tag!r} must be one word, not starting with + or -")
    return tag


class GitState(Value):
    """The git repository ``cwd`` was in, when the session started."""

    __slots__ = ("branch", "commit", "root", "worktree")

    root: str  # the working tree's top-level directory
    branch: str | None  # None: detached (then ``commit``)
    commit: str | None
    worktree: bool  # a linked worktree (``git worktree add``), not the main checkout

    def __init__(self, root: str, branch: str | None, commit: str | None, worktree: bool) -> None:
        self._set(
            root=check_text("git.root", root, MAX_PATH),
            branch=None if branch is None else check_text("git.branch", branch),
            commit=None if commit is None else check_text("git.commit", commit),
            worktree=bool(worktree),
        )

    def to_dict(self) -> dict[str, object]:
        return {"root": self.root, "branch": self.branch, "commit": self.commit, "worktree": self.worktree}


class Host(Value):
    """The machine a session ran on: its hostname and machine id."""

    __slots__ = ("hostname", "machine_id")

    hostname: str
    machine_id: str | None

    def __init__(self, hostname: str, machine_id: str | None) -> None:
        self._set(
            hostname=check_text("host.hostname", hostname),
            machine_id=None if machine_id is None else check_text("host.machine_id", machine_id),
        )

    def to_dict(self) -> dict[str, object]:
        return {"hostname": self.hostname, "machine_id": self.machine_id}


class Details(Value):
    """A session's "what". Immutable; ``tags`` sorted and unique, ``labels``
    sorted by key."""

    __slots__ = ("cwd", "external_id", "git", "host", "labels", "parent", "project", "tags", "title", "tool")

    cwd: str | None
    project: str | None
    git: GitState | None
    tool: str | None
    external_id: str | None
    parent: str | None  # a session id
    tags: tuple[str, ...]
    title: str | None
    labels: tuple[tuple[str, str], ...]
    host: Host | None

    def __init__(  # noqa: PLR0917 -- a record's fields
        self,
        cwd: str | None = None,
        project: str | None = None,
        git: GitState | None = None,
        tool: str | None = None,
        external_id: str | None = None,
        parent: str | None = None,
        tags: tuple[str, ...] | frozenset[str] | list[str] = (),
        title: str | None = None,
        labels: dict[str, str] | tuple[tuple[str, str], ...] = (),
        host: Host | None = None,
    ) -> None:
        if cwd is not None:
            check_text("cwd", cwd, MAX_PATH)
            if not cwd.startswith("/"):
                raise InvalidArgumentError(f"cwd {cwd!r} must be an absolute path")
        if parent is not None:
            from agent.session_id import parse_session_id

            try:
                parent = parse_session_id(parent)
            except ValueError as exc:
                raise InvalidArgumentError(f"parent: {exc}") from None
        tag_set = sorted({check_tag(t) for t in tags})
        if len(tag_set) > MAX_TAGS:
            raise InvalidArgumentError(f"a session takes at most {MAX_TAGS} tags, not {len(tag_set)}")
        pairs = sorted(labels.items() if isinstance(labels, dict) else labels)
        _check_labels(pairs)
        self._set(
            cwd=cwd,
            project=None if project is None else check_text("project", project),
            git=git,
            tool=None if tool is None else check_text("tool", tool),
            external_id=None if external_id is None else check_text("external_id", external_id),
            parent=parent,
            tags=tuple(tag_set),
            title=None if title is None else check_text("title", title, MAX_TITLE),
            labels=tuple(pairs),
            host=host,
        )

    def replace(self, **changes: object) -> Details:
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return Details(**fields)

    def to_dict(self) -> dict[str, object]:
        """The JSON fields (each present, ``null``/empty when unset)."""
        return {
            "cwd": self.cwd,
            "project": self.project,
            "git": self.git.to_dict() if self.git else None,
            "tool": self.tool,
            "external_id": self.external_id,
            "parent": self.parent,
            "tags": list(self.tags),
            "title": self.title,
            "labels": dict(self.labels),
            "host": self.host.to_dict() if self.host else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Details:
        """The inverse of ``to_dict`` (missing fields: unset). ``ValueError``."""
        git, host = data.get("git"), data.get("host")
        tags, labels = data.get("tags") or [], data.get("labels") or {}
        if not isinstance(tags, list) or not isinstance(labels, dict):
            raise ValueError("tags must be a list and labels an object")
        try:
            return cls(
                cwd=_optional_str(data.get("cwd")),
                project=_optional_str(data.get("project")),
                git=None
                if git is None
                else GitState(
                    str(_field(git, "root")),
                    _optional_str(_field(git, "branch")),
                    _optional_str(_field(git, "commit")),
                    bool(_field(git, "worktree")),
                ),
                tool=_optional_str(data.get("tool")),
                external_id=_optional_str(data.get("external_id")),
                parent=_optional_str(data.get("parent")),
                tags=[str(t) for t in tags],
                title=_optional_str(data.get("title")),
                labels={str(k): str(v) for k, v in labels.items()},
                host=None
                if host is None
                else Host(str(_field(host, "hostname")), _optional_str(_field(host, "machine_id"))),
            )
        except InvalidArgumentError as exc:
            raise ValueError(str(exc)) from None

    def given(self) -> dict[str, object]:
        """The given fields that are set, as a start request carries them."""
        shown = self.to_dict()
        return {name: shown[name] for name in GIVEN_FIELDS if shown[name] not in (None, [], {})}

    @classmethod
    def from_given(cls, args: Mapping[str, object]) -> Details:
        """What a start request gives (``given``'s shape, from JSON);
        ``InvalidArgumentError`` naming the field that is wrong."""
        tags, labels = args.get("tags", []), args.get("labels", {})
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InvalidArgumentError("tags must be a list of strings")
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise InvalidArgumentError("labels must be an object of strings")
        texts = {}
        for name in ("cwd", "project", "tool", "external_id", "parent", "title"):
            value = args.get(name)
            if value is not None and not isinstance(value, str):
                raise InvalidArgumentError(f"{name} must be a string")
            texts[name] = value
        return cls(**texts, tags=tags, labels=labels)  # type: ignore[arg-type]


def _field(data: object, name: str) -> object:
    if not isinstance(data, dict):
        raise ValueError(f"expected an object with {name}")
    return data.get(name)


def _optional_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _check_labels(pairs: list[tuple[str, str]]) -> None:
    if len(pairs) > MAX_LABELS:
        raise InvalidArgumentError(f"a session takes at most {MAX_LABELS} labels, not {len(pairs)}")
    total = 0
    for key, value in pairs:
        check_text("a label's key", key)
        if "=" in key or any(ch.isspace() for ch in key):
            raise InvalidArgumentError(f"label key {key!r} must be one word without '='")
        check_text(f"label {key}", value, MAX_LABEL_BYTES)
        total += len(key.encode()) + len(value.encode())
    if total > MAX_LABEL_BYTES:
        raise InvalidArgumentError(
            f"a session's labels hold at most {MAX_LABEL_BYTES} bytes in all, not {total}; "
            "keep long values elsewhere and a reference here"
        )


NO_DETAILS = Details()


class DetailsChange(Value):
    """A change of what a session was (``tag``, ``set``): fields set (``None``:
    cleared), tags added and removed, labels set (``None``: removed)."""

    __slots__ = ("add_tags", "labels", "remove_tags", "texts")

    texts: tuple[tuple[str, str | None], ...]
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    labels: tuple[tuple[str, str | None], ...]

    SETTABLE = ("project", "title", "tool", "external_id", "parent", "cwd")

    def __init__(
        self,
        texts: Mapping[str, str | None] | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        labels: Mapping[str, str | None] | None = None,
    ) -> None:
        texts = dict(texts or {})
        unknown = sorted(set(texts) - set(self.SETTABLE))
        if unknown:
            raise InvalidArgumentError(
                f"cannot set {', '.join(unknown)}: set takes {', '.join(self.SETTABLE)} and label.KEY"
            )
        self._set(
            texts=tuple(sorted(texts.items())),
            add_tags=tuple(check_tag(t) for t in add_tags),
            remove_tags=tuple(remove_tags),
            labels=tuple(sorted((labels or {}).items())),
        )

    def applied_to(self, details: Details) -> Details:
        """``details`` changed; ``InvalidArgumentError`` naming a bad value (and
        nothing changed)."""
        tags = (set(details.tags) | set(self.add_tags)) - set(self.remove_tags)
        labels = dict(details.labels)
        for key, value in self.labels:
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        return details.replace(**dict(self.texts), tags=tuple(tags), labels=labels)

    def to_args(self) -> dict[str, object]:
        """As the socket's ``update`` carries it."""
        return {
            "set": dict(self.texts),
            "add_tags": list(self.add_tags),
            "remove_tags": list(self.remove_tags),
            "labels": dict(self.labels),
        }

    @classmethod
    def from_args(cls, args: Mapping[str, object]) -> DetailsChange:
        texts, labels = args.get("set", {}), args.get("labels", {})
        add, remove = args.get("add_tags", []), args.get("remove_tags", [])
        if not isinstance(texts, dict) or not all(v is None or isinstance(v, str) for v in texts.values()):
            raise InvalidArgumentError("set must be an object of strings (null: clear)")
        if not isinstance(labels, dict) or not all(v is None or isinstance(v, str) for v in labels.values()):
            raise InvalidArgumentError("labels must be an object of strings (null: remove)")
        for name, tags in (("add_tags", add), ("remove_tags", remove)):
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise InvalidArgumentError(f"{name} must be a list of strings")
        return cls(texts, add, remove, labels)  # type: ignore[arg-type]


class SessionFilter(Value):
    """What a listing keeps besides status and time: a project (listed from
    its index, not by a scan), sessions with every one of ``tags``, a tool."""

    __slots__ = ("project", "tags", "tool")

    project: str | None
    tags: frozenset[str]
    tool: str | None

    def __init__(
        self, project: str | None = None, tags: frozenset[str] = frozenset(), tool: str | None = None
    ) -> None:
        self._set(project=project, tags=frozenset(tags), tool=tool)

    @classmethod
    def from_args(cls, args: Mapping[str, object]) -> SessionFilter:
        """From a request's ``project``, ``tags`` and ``tool``;
        ``InvalidArgumentError`` naming the bad one."""
        project, tool, tags = args.get("project"), args.get("tool"), args.get("tags") or []
        for name, value in (("project", project), ("tool", tool)):
            if value is not None and (not isinstance(value, str) or len(value) > MAX_NAME):
                raise InvalidArgumentError(f"{name} must be a name of at most {MAX_NAME} bytes")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags) or len(tags) > MAX_TAGS:
            raise InvalidArgumentError(f"tags must be a list of at most {MAX_TAGS} strings")
        return cls(project, frozenset(tags), tool)  # type: ignore[arg-type]

    def keeps(self, session: Session) -> bool:
        d = session.details
        return self.matches(d.project, d.tool, d.tags)

    def matches(self, project: str | None, tool: str | None, tags: tuple[str, ...]) -> bool:
        """Whether a session of this project, tool and tags is kept."""
        return (
            (self.project is None or project == self.project)
            and (self.tool is None or tool == self.tool)
            and self.tags <= set(tags)
        )


ANY = SessionFilter()
