"""``FakeAnthropic``: a stand-in for Anthropic's Messages API on loopback, so
that the real Claude Code CLI runs a whole conversation offline (with a fake
key and ``ANTHROPIC_BASE_URL`` pointing here) and fires its hooks as it
would for a user.

The model's replies are scripted: each ``POST /v1/messages`` takes the next
``Reply`` -- a text that ends the turn, or a tool call (Claude Code runs the
tool and asks again). Each reply waits for the test's go-ahead
(``release``), so a test can let time pass "while the model thinks" without
sleeping: it holds the answer until what it waits for has happened.
Nothing else of the API is imitated: other requests get an empty 404.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .loopback import Handler, serving

HOLD_TIMEOUT = 60.0


@dataclass(frozen=True)
class Reply:
    """One answer of the model: ``text`` (the turn ends), or a ``tool`` call
    with its ``tool_input`` (the turn goes on after the tool ran)."""

    text: str = "done"
    tool: str | None = None
    tool_input: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeAnthropic:
    replies: list[Reply]
    url: str = ""
    requests: int = 0
    gate: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def release(self, count: int = 1) -> None:
        """Let ``count`` more replies go out."""
        for _ in range(count):
            self.gate.release()

    def next_reply(self) -> Reply:
        if not self.gate.acquire(timeout=HOLD_TIMEOUT):
            raise TimeoutError("the test never released the model's reply")
        self.requests += 1
        return self.replies.pop(0) if self.replies else Reply()


def _events(reply: Reply, model: str) -> bytes:
    message: dict[str, Any] = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    if reply.tool is None:
        block: dict[str, Any] = {"type": "text", "text": ""}
        delta: dict[str, Any] = {"type": "text_delta", "text": reply.text}
        stop = "end_turn"
    else:
        block = {"type": "tool_use", "id": "toolu_fake", "name": reply.tool, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(reply.tool_input)}
        stop = "tool_use"
    events = [
        ("message_start", {"type": "message_start", "message": message}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 1},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode() for kind, data in events)


def _handler(api: FakeAnthropic) -> type[Handler]:
    class Answer(Handler):
        def do_GET(self) -> None:
            self.send(404, "application/json", b"{}")

        def do_HEAD(self) -> None:
            self.send(200, "application/json", b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
                self.send(200, "application/json", b'{"input_tokens": 1}')
                return
            model = str(request.get("model", "claude"))
            self.send(200, "text/event-stream", _events(api.next_reply(), model))

    return Answer


@contextmanager
def fake_anthropic(*replies: Reply) -> Iterator[FakeAnthropic]:
    """Serve the API on an ephemeral loopback port for the block."""
    api = FakeAnthropic(list(replies))
    with serving(_handler(api)) as api.url:
        try:
            yield api
        finally:
            api.release(100)  # nothing left waiting on a test that has gone
