"""Chat templates from model files run sandboxed; a model without one gets labelled ChatML."""

from __future__ import annotations

import pytest

from app.chat_template import ChatTemplate, ChatTemplateError

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_fallback_is_labelled_chatml() -> None:
    template = ChatTemplate.from_metadata(None)
    assert template.source == "fallback:chatml"
    assert template.render(MESSAGES) == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                                         "<|im_start|>user\nHi<|im_end|>\n"
                                         "<|im_start|>assistant\n")
    assert ChatTemplate.from_metadata("   ").source == "fallback:chatml"


def test_model_template_gets_bos_and_generation_prompt() -> None:
    text = ("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
            "{% if add_generation_prompt %}[assistant]{% endif %}")
    template = ChatTemplate.from_metadata(text, bos_token="<s>")
    assert template.source == "gguf" and len(template.sha256) == 16
    assert template.render(MESSAGES) == "<s>[system]Be brief.[user]Hi[assistant]"
    assert template.render(MESSAGES, add_generation_prompt=False).endswith("Hi")


@pytest.mark.parametrize("hostile", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.__class__.__init__.__globals__ }}",
    "{% set x = messages.append({'role': 'user'}) %}",  # immutable sandbox: no mutation
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
])
def test_hostile_templates_are_stopped(hostile: str) -> None:
    with pytest.raises(ChatTemplateError):
        ChatTemplate.from_metadata(hostile).render(MESSAGES)


def test_template_errors_speak_plainly() -> None:
    with pytest.raises(ChatTemplateError, match="does not parse"):
        ChatTemplate.from_metadata("{% for %}").render(MESSAGES)
    raising = "{{ raise_exception('Conversation roles must alternate') }}"
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        ChatTemplate.from_metadata(raising).render(MESSAGES)
