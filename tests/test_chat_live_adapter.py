"""Chat serves a fine-tune as its base plus the live adapter: picking it after the base
switches the adapter without reloading, and back; each reply records its adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

from app.inference import protocol as p
from app.models.live import plan_load
from app.models.provenance import Provenance
from app.workspace import Workspace
from backends.export.adapter_gguf import export_adapter
from backends.training.base_model import load_base
from tests.arch_factory import write_tiny_arch_gguf

WAIT_MS = 120_000


@pytest.fixture
def tuned(workspace: Workspace, tmp_path: Path):
    base_path = write_tiny_arch_gguf("llama", tmp_path / "base.gguf")
    base = load_base(base_path)
    torch.manual_seed(0)
    peft_model = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8,
                                                       target_modules="all-linear",
                                                       init_lora_weights=False))
    adapter = export_adapter(base_path, get_peft_model_state_dict(peft_model), 8,
                             tmp_path / "adapter.gguf", "a")
    lib = workspace.library
    base_record = lib.register(base_path, "base")
    # The merged file stands in as the tuned model's own GGUF (same shape).
    tuned_record = lib.register(base_path, "tuned", source="finetune", provenance=Provenance(
        base_model="base", base_path=str(base_record.path), adapter_gguf=str(adapter)))
    return base_record, tuned_record, adapter


def test_the_load_plan_prefers_the_live_adapter_and_knows_when_to_only_switch(
        workspace: Workspace, tuned) -> None:
    base, record, adapter = tuned
    plan = plan_load(record, workspace.library, None)
    assert (plan.path, plan.adapter, plan.switch_only) == (base.path, str(adapter), False)
    assert plan_load(record, workspace.library, str(base.path)).switch_only
    assert plan_load(base, workspace.library, str(base.path)).adapter is None
    adapter.unlink()  # gone: the merged file is loaded instead
    assert plan_load(record, workspace.library, None).adapter is None


def test_switching_between_base_and_tuned_in_chat_is_an_adapter_switch(
        qtbot, workspace: Workspace, tuned) -> None:
    from ui.chat.chat_view_model import ChatViewModel, ModelState
    from ui.chat.inference_bridge import InferenceBridge
    from ui.chat.message_widget import producer_note

    _base, _record, adapter = tuned
    bridge = InferenceBridge()
    chat = ChatViewModel(workspace, bridge)
    events: list[object] = []
    bridge.event.connect(events.append)
    try:
        chat.load_model("base")
        qtbot.waitUntil(lambda: chat.state == ModelState.READY, timeout=WAIT_MS)
        chat.load_model("tuned")
        qtbot.waitUntil(lambda: chat.state == ModelState.READY and chat.adapter == str(adapter),
                        timeout=WAIT_MS)
        chat.load_model("base")
        qtbot.waitUntil(lambda: chat.state == ModelState.READY and not chat.adapter,
                        timeout=WAIT_MS)
        assert sum(isinstance(e, p.Loaded) for e in events) == 1  # never reloaded
        switches = [e for e in events if isinstance(e, p.AdapterSet)]
        assert [s.path for s in switches] == [str(adapter), None]
        assert all(s.seconds < 1.0 for s in switches)

        chat.load_model("tuned")
        qtbot.waitUntil(lambda: chat.state == ModelState.READY and chat.adapter == str(adapter),
                        timeout=WAIT_MS)
        chat.new_conversation()
        with qtbot.waitSignal(chat.reply_finished, timeout=WAIT_MS):
            chat.send("hi")
        reply = workspace.store.messages(chat.conversation_id)[-1]
        assert reply.stats is not None and reply.stats["adapter"] == str(adapter)
        assert reply.stats["model"] == "tuned"
        # Back to the base in the same conversation: its reply says so.
        chat.load_model("base")
        qtbot.waitUntil(lambda: chat.state == ModelState.READY and not chat.adapter,
                        timeout=WAIT_MS)
        with qtbot.waitSignal(chat.reply_finished, timeout=WAIT_MS):
            chat.send("and now?")
        replies = [m for m in workspace.store.messages(chat.conversation_id)
                   if m.role == "assistant"]
        assert [(m.stats or {}).get("model") for m in replies] == ["tuned", "base"]
        assert [bool((m.stats or {}).get("adapter")) for m in replies] == [True, False]
        assert producer_note(replies[0].stats) == "by tuned (adapter applied live)"
        assert producer_note(replies[1].stats) == "by base"
    finally:
        chat.shutdown()
