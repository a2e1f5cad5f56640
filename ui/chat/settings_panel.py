"""The panel beside the conversation: system prompt, sampling and load settings.

The system prompt belongs to the open conversation. Sampling is remembered per model
(a person tunes temperature for a model, not for a chat). Load settings are the
model's llama.cpp settings and take effect with "Apply and reload".
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.inference import protocol as p
from app.settings import LoadSettings
from ui.chat.chat_view_model import ChatViewModel
from ui.chat.documents_box import DocumentsBox
from ui.chat.structure_box import StructureBox
from ui.chat.tools_box import ToolsBox
from ui.untrusted import PlainLabel
from ui.wheel_guard import guard_wheel


def _double(low: float, high: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box


def _set_quietly(box: QSpinBox | QDoubleSpinBox, value: float) -> None:
    """Show ``value`` without touching a box that already shows it: re-setting a box
    a person is typing into rewrites their half-typed number (0.45 became 0.00)."""
    if box.value() != value:
        box.setValue(value)


TEMPLATE_LABELS = {"auto": "Auto", "raw": "None (plain text)", "chatml": "ChatML",
                   "llama3": "Llama 3", "gemma": "Gemma", "phi3": "Phi-3"}
"""The choices of app.chat.template_choice.CHOICES, in words."""


class SettingsPanel(QScrollArea):
    def __init__(self, chat: ChatViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chat = chat
        self.setObjectName("settingsPanel")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumWidth(230)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.addWidget(self._build_prompt_box())
        layout.addWidget(self._build_sampling_box())
        self.structure = StructureBox(chat)
        layout.addWidget(self.structure)
        self.tools_box = ToolsBox(chat)
        layout.addWidget(self.tools_box)
        self.documents_box = DocumentsBox(chat)
        layout.addWidget(self.documents_box)
        layout.addWidget(self._build_load_box())
        layout.addStretch(1)
        for combo in page.findChildren(QComboBox):  # long item texts never widen the panel
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        self.setWidget(page)
        guard_wheel(page)  # scrolling the panel must not change the value under the pointer
        self._connect()
        self._loading_fields = False
        self._on_conversation_opened()
        self._show_sampling()
        self._show_load(chat.workspace.settings.load)

    def _build_prompt_box(self) -> QGroupBox:
        prompt_box = QGroupBox("System prompt")
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("How the assistant should behave in this "
                                              "conversation, e.g. “Answer briefly.”")
        self.system_prompt.setFixedHeight(110)
        QVBoxLayout(prompt_box).addWidget(self.system_prompt)
        return prompt_box

    def _build_sampling_box(self) -> QGroupBox:
        sampling_box = QGroupBox("Sampling")
        form = QFormLayout(sampling_box)
        self.temperature = _double(0.0, 2.0, 0.05)
        self.top_p = _double(0.01, 1.0, 0.01)
        self.top_k = QSpinBox()
        self.top_k.setRange(0, 1000)
        self.min_p = _double(0.0, 1.0, 0.01)
        self.repeat_penalty = _double(0.5, 2.0, 0.01)
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setSpecialValueText("random")
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 32768)
        self.max_tokens.setSingleStep(64)
        for label, box, tip in (
                ("Temperature", self.temperature, "Higher is more varied; 0 always picks "
                 "the likeliest token"),
                ("Top-p", self.top_p, "Sample from the smallest set of tokens whose "
                 "probabilities add up to this"),
                ("Top-k", self.top_k, "Sample from this many likeliest tokens (0: all)"),
                ("Min-p", self.min_p, "Drop tokens less likely than this fraction of the "
                 "likeliest"),
                ("Repeat penalty", self.repeat_penalty, "Above 1 discourages repetition"),
                ("Seed", self.seed, "The same seed and settings give the same reply"),
                ("Max tokens", self.max_tokens, "The longest reply; Continue extends a "
                 "reply cut here")):
            box.setToolTip(tip)
            form.addRow(label, box)
        self.reset_sampling = QPushButton("Defaults")
        form.addRow("", self.reset_sampling)
        self.sampling_for = PlainLabel()
        self.sampling_for.setWordWrap(True)
        self.sampling_for.setObjectName("statsLabel")
        form.addRow(self.sampling_for)
        return sampling_box

    def _build_load_box(self) -> QGroupBox:
        load_box = QGroupBox("Model loading")
        load_form = QFormLayout(load_box)
        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(256, 262144)
        self.n_ctx.setSingleStep(1024)
        self.n_ctx.setSuffix(" tokens")
        self.n_gpu_layers = QSpinBox()
        self.n_gpu_layers.setRange(-1, 999)
        self.n_gpu_layers.setSpecialValueText("all")
        self.n_threads = QSpinBox()
        self.n_threads.setRange(0, 256)
        self.n_threads.setSpecialValueText("auto")
        self.flash_attn = QCheckBox("Flash attention")
        self.template = QComboBox()
        for choice, label in TEMPLATE_LABELS.items():
            self.template.addItem(label, choice)
        self.template.setToolTip("How this model's conversation is written for it. Auto: "
                                 "the model's own template, else its family's, else plain "
                                 "text for a base model to continue")
        load_form.addRow("Context", self.n_ctx)
        load_form.addRow("GPU layers", self.n_gpu_layers)
        load_form.addRow("Threads", self.n_threads)
        load_form.addRow("", self.flash_attn)
        self.cache_type = QComboBox()
        self.cache_type.addItem("f16 (exact)", "f16")
        self.cache_type.addItem("q8_0 (half the memory)", "q8_0")
        self.cache_type.setToolTip("The KV cache's element type; q8_0 turns on flash "
                                   "attention and the memory estimate follows")
        load_form.addRow("KV cache", self.cache_type)
        self.prompt_lookup = QSpinBox()
        self.prompt_lookup.setRange(0, 32)
        self.prompt_lookup.setSpecialValueText("off")
        self.prompt_lookup.setSuffix(" tokens")
        self.prompt_lookup.setToolTip("Speculative decoding: draft this many tokens copied "
                                      "from the conversation and check them in one step. "
                                      "Faster only where replies repeat their input, on "
                                      "some models ('hearth bench speculative' measures)")
        load_form.addRow("Prompt lookup", self.prompt_lookup)
        load_form.addRow("Chat template", self.template)
        self.reload_button = QPushButton("Apply and reload")
        load_form.addRow("", self.reload_button)
        return load_box

    def _connect(self) -> None:
        chat = self.chat
        self._prompt_timer = QTimer(self, singleShot=True, interval=400)
        self._prompt_timer.timeout.connect(self._on_prompt_edited)
        self.system_prompt.textChanged.connect(self._prompt_timer.start)
        for box in (self.temperature, self.top_p, self.min_p, self.repeat_penalty,
                    self.top_k, self.seed, self.max_tokens):
            # A number counts once it is typed (Enter, focus out) or stepped, not at
            # each keystroke: "1." is not a temperature of 1.
            box.setKeyboardTracking(False)
            box.valueChanged.connect(self._on_sampling_edited)
        self.reset_sampling.clicked.connect(self._on_reset_sampling)
        self.reload_button.clicked.connect(self._on_reload)
        chat.conversation_opened.connect(self._on_conversation_opened)
        chat.sampling_changed.connect(self._show_sampling)
        chat.sampling_changed.connect(self._show_template)

    # ------------------------------------------------------------------ showing

    def _show_sampling(self) -> None:
        s = self.chat.sampling
        self._loading_fields = True
        for box, value in ((self.temperature, s.temperature), (self.top_p, s.top_p),
                           (self.top_k, s.top_k), (self.min_p, s.min_p),
                           (self.repeat_penalty, s.repeat_penalty),
                           (self.seed, -1 if s.seed is None else s.seed),
                           (self.max_tokens, s.max_tokens)):
            _set_quietly(box, value)
        self._loading_fields = False
        self.sampling_for.setText(f"Remembered for {self.chat.model_name or 'this model'}")

    def _show_load(self, load: LoadSettings) -> None:
        self.n_ctx.setValue(load.n_ctx)
        self.n_gpu_layers.setValue(load.n_gpu_layers)
        self.n_threads.setValue(load.n_threads or 0)
        self.flash_attn.setChecked(load.flash_attn)
        self.cache_type.setCurrentIndex(max(0, self.cache_type.findData(load.cache_type)))
        self.prompt_lookup.setValue(load.prompt_lookup)
        self._show_template()

    def _show_template(self) -> None:
        """The chosen model's template choice (it is kept per model)."""
        model = self.chat.model_name
        choice = self.chat.workspace.settings.template_for(model) if model else "auto"
        self.template.setCurrentIndex(max(0, self.template.findData(choice)))

    def _on_conversation_opened(self, *_args: object) -> None:
        self._prompt_timer.stop()
        conversation = self.chat.conversation
        blocked = self.system_prompt.blockSignals(True)
        self.system_prompt.setPlainText(conversation.system_prompt if conversation else "")
        self.system_prompt.blockSignals(blocked)
        self.system_prompt.setEnabled(conversation is not None)

    # -------------------------------------------------------------------- slots

    def _on_prompt_edited(self) -> None:
        self.chat.set_system_prompt(self.system_prompt.toPlainText())

    def flush(self) -> None:
        """Save a system prompt still waiting for its debounce (window closing)."""
        self.structure.flush()
        if self._prompt_timer.isActive():
            self._prompt_timer.stop()
            self._on_prompt_edited()

    def _on_sampling_edited(self) -> None:
        if self._loading_fields:
            return
        sampling = replace(self.chat.sampling, temperature=self.temperature.value(),
                           top_p=self.top_p.value(), top_k=self.top_k.value(),
                           min_p=self.min_p.value(),
                           repeat_penalty=self.repeat_penalty.value(),
                           seed=None if self.seed.value() < 0 else self.seed.value(),
                           max_tokens=self.max_tokens.value())
        self.chat.set_sampling(sampling)

    def _on_reset_sampling(self) -> None:
        self.chat.set_sampling(p.SamplingParams())

    def _on_reload(self) -> None:
        settings = self.chat.workspace.settings
        settings.load = LoadSettings(n_ctx=self.n_ctx.value(),
                                     n_gpu_layers=self.n_gpu_layers.value(),
                                     n_threads=self.n_threads.value() or None,
                                     flash_attn=self.flash_attn.isChecked(),
                                     cache_type=self.cache_type.currentData(),
                                     prompt_lookup=self.prompt_lookup.value())
        if self.chat.model_name:
            settings.remember_template(self.chat.model_name, self.template.currentData())
        self.chat.workspace.save_settings()
        self.chat.reload()


