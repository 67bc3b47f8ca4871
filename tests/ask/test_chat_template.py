"""`ask` through a model's own chat template, with a tiny GGUF that has one (built here)."""

from __future__ import annotations

import jinja2
import pytest
from conftest import spy_on_completions
from llama_cpp import Llama
from repotune.server.ask.prompts import build_ask_messages
from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.engine import CompletionEngine
from repotune.server.config import load_settings
from tiny_models import BOS_TOKEN, CHATML_TEMPLATE, EOS_TOKEN, write_tiny_llama


@pytest.fixture(scope="module")
def chat_engine(tmp_path_factory: pytest.TempPathFactory):
    model = write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-chat.gguf")
    engine = CompletionEngine(load_settings(None, {"model": {"generator": str(model)}}))
    assert engine.wait_ready(120), engine.load_error
    yield engine
    engine.close()


def test_ask_sends_the_chat_template_rendering(
    chat_engine: CompletionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a template in the GGUF, the prompt is the template applied to the question's
    messages (rendered here with jinja2 as Hugging Face does), not the Q&A document."""
    assert chat_engine.status()["chat_template"] is True
    sent = spy_on_completions(monkeypatch, Llama)
    snippet = ContextSnippet("tides.py", "def high_tide(day: int) -> float:\n    return 1.5\n", 1)
    question = "What does high_tide return?"
    answer = chat_engine.ask(question, [snippet], max_tokens=8)
    assert isinstance(answer, str)

    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    rendered = environment.from_string(CHATML_TEMPLATE).render(
        messages=build_ask_messages(question, [snippet]),
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        add_generation_prompt=True,
    )
    assert rendered.startswith("<s><|im_start|>system\n") and question in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    assert len(sent) == 1
    prompt, llm = sent[0]["prompt"], sent[0]["llama"]
    assert isinstance(prompt, list)  # token ids, as llama-cpp-python's chat handler sends them
    assert prompt == llm.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
    assert llm.detokenize(prompt, special=True).decode().endswith("<|im_start|> assistant\n")
