"""A scripted chat model: the reply is picked by a phrase of the node's system prompt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

PROMPT_KEYS = {
    "detect": "incident triage step",
    "analyze_code": "senior engineer reviewing",
    "rca": "root-cause analysis step",
    "suggest": "mitigation step",
    "propose_fix": "pull request that reverts",
    "brief": "opening of an incident brief",
}


def tool_reply(schema: str, args: dict[str, Any], input_tokens: int = 100, output_tokens: int = 20) -> AIMessage:
    """An AIMessage that calls the structured-output tool `schema` with `args`."""
    return AIMessage(
        content="",
        tool_calls=[{"name": schema, "args": args, "id": f"call_{schema}", "type": "tool_call"}],
        usage_metadata={"input_tokens": input_tokens, "output_tokens": output_tokens,
                        "total_tokens": input_tokens + output_tokens},
    )


class ScriptedChatModel(GenericFakeChatModel):
    """Answers each node with its scripted reply (an AIMessage, or an exception to raise)."""

    messages: Iterator[Any] = iter(())
    script: dict[str, Any] = {}
    calls: list[str] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        system = str(messages[0].content)
        for node, reply in self.script.items():
            if PROMPT_KEYS[node] in system:
                self.calls.append(node)
                if isinstance(reply, Exception):
                    raise reply
                return ChatResult(generations=[ChatGeneration(message=reply)])
        raise AssertionError(f"no scripted reply for prompt: {system[:80]!r}")
