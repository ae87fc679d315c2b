"""``FakeOpenAI``: a stand-in for OpenAI's Responses API on loopback, so that
the real Codex CLI (a model provider of ours in its ``config.toml``) and the
real GitHub Copilot CLI (``COPILOT_OFFLINE`` with ``COPILOT_PROVIDER_BASE_URL``)
run a conversation offline and fire their hooks as they would for a user.

Each ``POST /responses`` (a model turn) waits for the test's go-ahead
(``release``), then streams one assistant message: a test can hold the
model "thinking" -- to kill the host meanwhile -- without sleeping.
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


@dataclass
class FakeOpenAI:
    text: str = "Hello from the fake."
    url: str = ""  # ends in /v1
    turns: int = 0
    gate: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self.gate.release()


def _stream(text: str, turn: int) -> bytes:
    response = f"resp-{turn}"
    message = {
        "type": "message",
        "role": "assistant",
        "id": f"msg-{turn}",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": response, "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**message, "content": []}},
        {"type": "response.output_text.delta", "item_id": message["id"], "output_index": 0, "delta": text},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {
            "type": "response.completed",
            "response": {"id": response, "status": "completed", "output": [message], "usage": usage},
        },
    ]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


@contextmanager
def fake_openai(text: str = "Hello from the fake.") -> Iterator[FakeOpenAI]:
    api = FakeOpenAI(text)

    class Answer(Handler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not self.path.endswith("/responses"):
                self.send(404, "application/json", b"{}")
                return
            if not api.gate.acquire(timeout=HOLD_TIMEOUT):
                self.send(503, "application/json", b"{}")
                return
            api.turns += 1
            self.send(200, "text/event-stream", _stream(api.text, api.turns))

        def do_GET(self) -> None:  # model lists: none to offer
            self.send(200, "application/json", b'{"object": "list", "data": [], "models": []}')

    with serving(Answer) as base:
        api.url = base + "/v1"
        try:
            yield api
        finally:
            api.release(100)  # let any held request go before the server stops
