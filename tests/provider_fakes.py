"""Loopback fakes of the Gemini and OpenAI chat APIs, answering each node by a phrase of its system prompt.

Replies have the shapes the real services send (Gemini `generateContent` candidates and `usageMetadata`, OpenAI
`chat.completion` choices and `usage`, and each one's error envelope), so the providers' own client classes parse them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from tests.fakes import PROMPT_KEYS
from tests.loopback import LoopbackServer, Reply, Request


def gemini_answer(answer: Any, input_tokens: int = 300, output_tokens: int = 40) -> Reply:
    """A generateContent answer whose text is `answer` (JSON-encoded unless it is a string)."""
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return Reply(200, {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": input_tokens, "candidatesTokenCount": output_tokens,
                          "totalTokenCount": input_tokens + output_tokens},
        "modelVersion": "gemini-2.5-flash", "responseId": "resp-1",
    })


def gemini_error(code: int, status: str, message: str) -> Reply:
    """Google's error envelope."""
    return Reply(code, {"error": {"code": code, "message": message, "status": status}})


def openai_answer(answer: Any, input_tokens: int = 300, output_tokens: int = 40) -> Reply:
    """A chat.completion whose message content is `answer`."""
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return Reply(200, {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_790_000_000, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                  "total_tokens": input_tokens + output_tokens},
    })


def openai_error(status: int, kind: str, message: str, code: str | None = None) -> Reply:
    """OpenAI's error envelope."""
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


ANSWER = {"google": gemini_answer, "openai": openai_answer}
RATE_LIMITED = {
    "google": gemini_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    "openai": openai_error(429, "requests", "Rate limit reached for gpt-4o-mini", "rate_limit_exceeded"),
}
SERVER_ERROR = {
    "google": gemini_error(500, "INTERNAL", "An internal error has occurred."),
    "openai": openai_error(500, "server_error", "The server had an error while processing your request."),
}


class FakeChatAPI:
    """One provider's chat API: per node, a queue of replies (the last one repeats); records every prompt."""

    def __init__(self, provider: str, script: dict[str, list[Reply]]):
        self.provider = provider
        self.script = {node: list(replies) for node, replies in script.items()}
        self.prompts: dict[str, list[str]] = defaultdict(list)  # the user message of each request, per node
        self.server = LoopbackServer(self)

    def __call__(self, request: Request) -> Reply:
        body = request.json()
        system, user = self._messages(body)
        node = next((n for n, phrase in PROMPT_KEYS.items() if phrase in system), None)
        if node is None:
            return Reply(400, {"error": {"code": 400, "message": "unknown prompt", "status": "INVALID_ARGUMENT"}})
        self.prompts[node].append(user)
        replies = self.script.get(node) or [Reply(500, {"error": {"message": f"no script for {node}"}})]
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def _messages(self, body: dict) -> tuple[str, str]:
        if self.provider == "google":
            system = "".join(p["text"] for p in body.get("systemInstruction", {}).get("parts", []))
            user = "".join(p.get("text", "") for c in body["contents"] for p in c["parts"])
            return system, user
        system = "".join(m["content"] for m in body["messages"] if m["role"] == "system")
        user = "".join(m["content"] for m in body["messages"] if m["role"] == "user")
        return system, user

    @property
    def url(self) -> str:
        """The base URL each client takes (OpenAI's clients expect the /v1 prefix in it)."""
        return self.server.url + ("/v1" if self.provider == "openai" else "")

    def calls(self, node: str) -> int:
        """How many requests the node made."""
        return len(self.prompts[node])

    def everything_received(self) -> str:
        """Every request body the API received, as text."""
        return "\n".join(r.body.decode() for r in self.server.requests)

    def __enter__(self) -> FakeChatAPI:
        self.server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.stop()
