"""``FakeGemini``: a stand-in for Google's Gemini API on loopback, so that the
real Gemini CLI runs a conversation offline (``GEMINI_API_KEY`` fake,
``GOOGLE_GEMINI_BASE_URL`` pointing here) and fires its hooks as it would
for a user.

Every ``generateContent`` (the CLI's own routing and checks) is answered at
once; each ``streamGenerateContent`` (the model's turn) waits for the test's
go-ahead (``release``), then answers with one text: a test can hold the
model "thinking" -- to kill the CLI meanwhile -- without sleeping.
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
class FakeGemini:
    text: str = "Hello from the fake."
    url: str = ""
    turns: int = 0
    gate: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self.gate.release()


def _answer(text: str) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
    }


@contextmanager
def fake_gemini(text: str = "Hello from the fake.") -> Iterator[FakeGemini]:
    api = FakeGemini(text)

    class Answer(Handler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if ":streamGenerateContent" in self.path:
                if not api.gate.acquire(timeout=HOLD_TIMEOUT):
                    self.send(503, "application/json", b"{}")
                    return
                api.turns += 1
                self.send(
                    200, "text/event-stream", b"data: " + json.dumps(_answer(api.text)).encode() + b"\n\n"
                )
                return
            # The CLI's own requests (choosing a model): a plain, quick answer.
            choice = json.dumps({"reasoning": "a greeting", "complexity_score": 1, "model_choice": "flash"})
            self.send(200, "application/json", json.dumps(_answer(choice)).encode())

        def do_GET(self) -> None:
            self.send(404, "application/json", b"{}")

    with serving(Answer) as api.url:
        try:
            yield api
        finally:
            api.release(100)  # let any held request go before the server stops
