"""The Training page: a run's progress, live loss chart, speed, memory and summary.

It only displays: :meth:`TrainingView.apply` takes one event of the training protocol
(live from the worker, or replayed from the run's ``events.jsonl``), and the Fine-tune
tab decides what the buttons do. A resumed run repeats the steps after its last
checkpoint; the chart drops the superseded points so every step appears once.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.finetune import protocol as tp
from app.finetune.runs.records import RunSummary
from app.models.library import ModelRecord
from app.units import format_bytes, format_duration, format_token_rate
from ui import theme
from ui.finetune.loss_chart import LossChart
from ui.untrusted import PlainLabel, SafeTextBrowser


def _drop_from(points: list[tuple[float, float]], step: float) -> None:
    """Remove the points at ``step`` and after (only a resumed run has any: O(1) else)."""
    while points and points[-1][0] >= step:
        points.pop()


class TrainingView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.train_points: list[tuple[float, float]] = []
        self.val_points: list[tuple[float, float]] = []
        self.last: dict[str, Any] = {}
        self.summary_warning: str | None = None  # a finished run that learned nothing
        layout = QVBoxLayout(self)
        self.run_title = PlainLabel("")
        self.run_title.setStyleSheet("font-size: 14px; font-weight: 600")
        self.run_title.setWordWrap(True)
        layout.addWidget(self.run_title)
        self.phase_label = PlainLabel("")
        layout.addWidget(self.phase_label)
        self.progress = QProgressBar()
        self.progress.setFormat("Getting ready…")  # steps are known once data is ready
        layout.addWidget(self.progress)
        row = QHBoxLayout()
        self.stat_labels: dict[str, QLabel] = {}
        for key, title in (("eta", "Time left"), ("elapsed", "Elapsed"),
                           ("speed", "Speed"), ("memory", "Peak memory"),
                           ("loss", "Loss"), ("val", "Validation loss")):
            box = QVBoxLayout()
            caption = QLabel(title)
            caption.setStyleSheet(f"color: {theme.readable(theme.MUTED)}; font-size: 11px")
            value = QLabel("–")
            value.setStyleSheet("font-size: 14px")
            box.addWidget(caption)
            box.addWidget(value)
            row.addLayout(box)
            self.stat_labels[key] = value
        row.addStretch(1)
        layout.addLayout(row)
        self.estimate_run_label = QLabel("")
        self.estimate_run_label.setStyleSheet(theme.colour_style(theme.MUTED))
        layout.addWidget(self.estimate_run_label)
        self.splitter = splitter = QSplitter(Qt.Orientation.Vertical)
        self.chart = LossChart()
        splitter.addWidget(self.chart)
        self.summary_view = SafeTextBrowser()
        self.summary_view.hide()
        splitter.addWidget(self.summary_view)
        self.log_view = QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(500)
        splitter.addWidget(self.log_view)
        splitter.setSizes([320, 220, 90])
        layout.addWidget(splitter, 1)
        buttons = QHBoxLayout()
        self.status_label = PlainLabel("")
        self.status_label.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.chat_button = QPushButton("Chat with it")
        self.compare_button = QPushButton("Compare with base")
        self.new_run_button = QPushButton("New run")
        buttons.addWidget(self.status_label, 1)
        for button in (self.cancel_button, self.resume_button, self.compare_button,
                       self.chat_button, self.new_run_button):
            buttons.addWidget(button)
            button.hide()
        layout.addLayout(buttons)

    def set_buttons(self, *shown: QPushButton) -> None:
        for button in (self.cancel_button, self.resume_button, self.compare_button,
                       self.chat_button, self.new_run_button):
            button.setVisible(button in shown)
            button.setEnabled(True)

    def reset(self, title: str) -> None:
        """Empty everything, ready for a run's events."""
        self.run_title.setText(title)
        self.summary_warning = None
        self.summary_view.hide()
        self.log_view.clear()
        self.train_points, self.val_points = [], []
        self.last = {}
        for label in self.stat_labels.values():
            label.setText("–")
        self.estimate_run_label.setText("")
        self.phase_label.setText("")
        self.status_label.setText("")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Getting ready…")  # not "step 0 of 1"
        self.chart.clear(None)

    def apply(self, event: object) -> None:
        """Show one event; the outcome events (Cancelled, Finished, errors) are logged
        here and acted on by the tab."""
        if isinstance(event, tp.TrainHello):
            self.status_label.setText("")  # "Starting the worker…" is over
            self.log(f"Worker on {event.device} ({event.dtype}), torch {event.torch_version}")
        elif isinstance(event, tp.Phase):
            self.phase_label.setText(event.message[:1].upper() + event.message[1:] + "…")
            self.log(event.message)
        elif isinstance(event, tp.DataReady):
            self.progress.setRange(0, event.total_steps)
            self.progress.setFormat("step %v of %m")
            self.chart.total_steps = event.total_steps
            self.log(f"Tokenized: {event.train_records} training / {event.val_records} "
                     f"validation records, {event.train_tokens:,} tokens "
                     f"({event.target_tokens:,} trained on), longest "
                     f"{event.longest_record_tokens}; {event.truncated_records} truncated "
                     f"to {event.max_seq_len}; {event.total_steps} steps")
        elif isinstance(event, tp.EstimateEvent):
            self.last["estimate"] = event
            self.estimate_run_label.setText(
                f"{'Measured' if event.basis == 'measured' else 'Estimated'}: about "
                f"{format_duration(event.seconds)} in all, peak memory about "
                f"{format_bytes(event.peak_memory_bytes)}")
        elif isinstance(event, tp.Progress):
            self.show_progress(event)
        elif isinstance(event, tp.Evaluation):
            self._add_point(self.val_points, event.step, event.val_loss,
                            self.chart.add_validation)
            self.stat_labels["val"].setText(f"{event.val_loss:.4f}")
        elif isinstance(event, tp.Checkpointed):
            self.last["checkpoint"] = event.step
        elif isinstance(event, tp.Exported):
            self.last[f"exported_{event.what}"] = event
            self.log(f"Wrote {Path(event.path).name} ({format_bytes(event.size_bytes)})")
        elif isinstance(event, tp.Log):  # what the run decided, and why, too
            self.log(("⚠ " if event.level != "info" else "") + event.message)
        elif isinstance(event, tp.Cancelled):
            self.last["checkpoint"] = event.step
            self.log(f"Cancelled at step {event.step}; checkpoint saved.")
        elif isinstance(event, tp.Error):
            self.log(f"Error: {event.message}")

    def show_progress(self, e: tp.Progress) -> None:
        self.progress.setRange(0, e.total_steps)
        self.progress.setFormat("step %v of %m")
        self.progress.setValue(e.step)
        self.phase_label.setText(f"Training: epoch {e.epoch:.2f}")
        self.stat_labels["eta"].setText(format_duration(e.eta_s))
        self.stat_labels["elapsed"].setText(format_duration(e.elapsed_s))
        self.stat_labels["speed"].setText(format_token_rate(e.tokens_per_s))
        self.stat_labels["memory"].setText(format_bytes(e.peak_memory_bytes))
        self.stat_labels["loss"].setText(f"{e.loss:.4f}")
        _drop_from(self.val_points, e.step)
        self._add_point(self.train_points, e.step, e.loss, self.chart.add_train)

    def _add_point(self, points: list[tuple[float, float]], step: float, loss: float,
                   add: Any) -> None:
        """Record a point; a resumed run repeats the steps after its last checkpoint, so
        a step at or before the last one drops the superseded points (and redraws)."""
        if not math.isfinite(loss):
            return  # the chart does not draw it either
        _drop_from(points, step)
        points.append((step, loss))
        if (len(self.chart.train), len(self.chart.validation)) == (
                len(self.train_points) - (points is self.train_points),
                len(self.val_points) - (points is self.val_points)):
            add(step, loss)  # the usual case: one more point at the end
            return
        self.chart.clear(self.chart.total_steps)
        for step, loss in self.train_points:
            self.chart.add_train(step, loss)
        for step, loss in self.val_points:
            self.chart.add_validation(step, loss)

    def log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def show_outcome(self, status: str, message: str, resumable: bool = False) -> None:
        """The run ended: say how, and offer what makes sense next (Resume when the
        caller found the run resumable: :func:`app.finetune.runs.status.can_resume`)."""
        colour = theme.SUCCESS if status == "finished" else (
            theme.ERROR if status in ("failed", "interrupted", "refused") else "")
        if status == "finished" and self.summary_warning:  # not plain success
            colour = theme.ERROR
            message += (" But it answers none of its own questions as trained: see the "
                        "summary.")
        self.status_label.setStyleSheet(theme.colour_style(colour) if colour else "")
        self.status_label.setText(message)
        if resumable:
            self.set_buttons(self.resume_button, self.new_run_button)
        elif status == "finished":
            self.set_buttons(self.compare_button, self.chat_button, self.new_run_button)
        else:
            self.set_buttons(self.new_run_button)
        if status != "finished":  # nothing is left to wait for: no "Time left"
            self.stat_labels["eta"].setText("–")
        self.phase_label.setText({"finished": "Done.", "cancelled": "Cancelled.",
                                  "failed": "Failed.", "interrupted": "Interrupted.",
                                  "refused": "Refused by the gate."}.get(status, ""))

    def show_summary(self, s: RunSummary, model: ModelRecord | None) -> None:
        self.summary_warning = s.recall.warning() if s.recall is not None else None
        self.summary_view.setHtml(summary_html(s, model))
        self.summary_view.show()
        total = sum(self.splitter.sizes()) or 600
        self.splitter.setSizes([int(total * 0.42), int(total * 0.46), int(total * 0.12)])
        self.progress.setValue(self.progress.maximum())
        self.stat_labels["eta"].setText("0 s")


def summary_html(s: RunSummary, model: ModelRecord | None) -> str:
    """The run summary: what was learned, how fast, how faithful the export is."""
    rows = _recall_rows(s)
    if model is not None:
        rows.append(("Model", f"<b>{html.escape(model.name)}</b> (in the library)"))
    if s.gguf_path:
        size = s.gguf_size_bytes
        rows.append(("File", f"{html.escape(Path(s.gguf_path).name)}"
                             + (f" — {format_bytes(size)}" if size else "")))
    first, final = s.first_train_loss, s.final_train_loss
    if first is not None and final is not None:
        rows.append(("Training loss", f"{first:.4f} → <b>{final:.4f}</b>"))
    if s.val_loss is not None:
        rows.append(("Validation loss", f"<b>{s.val_loss:.4f}</b> on "
                                        f"{s.val_records} held-out records"))
    rows.append(("Training", f"{s.steps} steps, {s.trained_tokens:,} tokens "
                             f"in {format_duration(s.train_seconds)} "
                             f"({format_token_rate(s.tokens_per_s)}) on "
                             f"{html.escape(str(s.device))}"))
    est = s.estimate
    rows.append(("Time", f"estimated {format_duration(est.seconds)} in all, took "
                         f"{format_duration(s.total_seconds or 0)} "
                         f"({format_duration(s.train_seconds)} of training)"))
    rows.append(("Peak memory", f"estimated {format_bytes(est.peak_memory_bytes)}"
                                f", used {format_bytes(s.peak_memory_bytes)}"))
    if s.truncated_records:
        rows.append(("Truncated", f"<span style='color:{theme.readable(theme.ERROR)}'>"
                                  f"{s.truncated_records} records were cut to "
                                  f"{s.settings.max_seq_len} tokens</span>"))
    rows += _export_rows(s)
    if s.adapter_dir:
        rows.append(("Adapter", html.escape(str(s.adapter_dir))))
    muted = theme.readable(theme.MUTED)
    body = "".join(f"<tr><td style='color:{muted}; padding-right:12px'>{k}</td>"
                   f"<td>{v}</td></tr>" for k, v in rows)
    return f"<h3 style='margin:0'>Summary</h3><table cellspacing=3>{body}</table>"


def _recall_rows(s: RunSummary) -> list[tuple[str, str]]:
    """What the result answers (first: it is what the run was for), and the warning when
    it answers none of its data. Questions and answers are the data's and the model's:
    escaped."""
    r = s.recall
    if r is None:
        return []
    error = theme.readable(theme.ERROR)
    if r.skipped:
        return [("Answers as trained", f"not checked ({html.escape(r.skipped)})")]
    parts = []
    if r.heldout_asked:
        parts.append(f"<b>{r.heldout_answered} of {r.heldout_asked}</b> held-out questions")
    if r.training_asked:
        parts.append(f"<b>{r.training_answered} of {r.training_asked}</b> training "
                     "questions")
    rows = [("Answers as trained", ", ".join(parts)),
            ("Everyday answers", html.escape(r.general_text())
             + " (held out, judged against the base's as Teach's gate judges them)")]
    warning = r.warning()
    if warning:
        rows.append(("⚠ Warning", f"<span style='color:{error}'>{html.escape(warning)}"
                                  "</span>"))
    for i, e in enumerate([e for e in r.examples if not e.carried][:2]):
        rows.append(("Not as trained" if i == 0 else "",
                     f"“{html.escape(e.question[:90])}” → “{html.escape(e.answer[:90])}” "
                     f"(trained: “{html.escape(e.trained[:90])}”)"))
    for i, c in enumerate(r.changed_examples[:2]):
        rows.append(("Changed" if i == 0 else "",
                     f"“{html.escape(str(c.get('prompt', ''))[:90])}” → "
                     f"“{html.escape(str(c.get('answer', ''))[:90])}” "
                     f"({html.escape(str(c.get('why', '')))})"))
    return rows


def _export_rows(s: RunSummary) -> list[tuple[str, str]]:
    """How faithful the exported GGUF is, or why there is none."""
    fid = s.fidelity
    if fid is None:
        if s.gguf_path:
            return []
        why = ("GGUF export was off for this run" if not s.export.gguf
               else "the base model is a safetensors folder")
        return [("Export", f"no GGUF ({why}); the LoRA adapter is saved")]
    rows = [("Export check", f"llama.cpp's logits of the F16 GGUF vs PyTorch: largest "
                             f"difference {fid.logits_max_abs_diff:.4f} (logits up "
                             f"to {fid.logits_ref_max_abs:.1f}), top-1 agreement "
                             f"{fid.top1_agreement:.1%} over "
                             f"{fid.tokens_compared} tokens"),
            ("Quantized", f"validation loss {fid.torch_val_loss:.4f} in PyTorch, "
                          f"{fid.gguf_val_loss:.4f} as {fid.quant} GGUF")]
    for warning in fid.warnings:
        rows.append(("⚠ Warning", f"<span style='color:{theme.readable(theme.ERROR)}'>"
                                  f"{html.escape(warning)}</span>"))
    if not fid.warnings:
        rows.append(("", f"<span style='color:{theme.readable(theme.SUCCESS)}'>✓ The "
                         "exported model matches the trained one.</span>"))
    return rows
