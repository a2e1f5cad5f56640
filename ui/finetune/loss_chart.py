"""A live chart of training and validation loss, drawn with QPainter.

Training reports a point every step, so the widget only records points and schedules a
repaint (Qt coalesces those); drawing scales to whatever has arrived so far. Plain
QPainter keeps it light: no chart library, and it follows the palette (light or dark).
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ui import theme

TRAIN_COLOUR = QColor(theme.TRAINING_LOSS)
VALIDATION_COLOUR = QColor(theme.VALIDATION_LOSS)


class LossChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.train: list[tuple[float, float]] = []
        self.validation: list[tuple[float, float]] = []
        self.total_steps: int | None = None
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def clear(self, total_steps: int | None = None) -> None:
        self.train.clear()
        self.validation.clear()
        self.total_steps = total_steps
        self.update()

    def add_train(self, step: float, loss: float) -> None:
        if math.isfinite(loss):
            self.train.append((step, loss))
            self.update()

    def add_validation(self, step: float, loss: float) -> None:
        if math.isfinite(loss):
            self.validation.append((step, loss))
            self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text = palette.color(palette.ColorRole.WindowText)
        grid = QColor(text)
        grid.setAlpha(40)
        plot = QRectF(self.rect()).adjusted(48, 12, -12, -28)
        painter.setPen(QPen(grid, 1))
        painter.drawRect(plot)
        points = self.train + self.validation
        if not points:
            painter.setPen(text)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "Loss appears here as the "
                             "model trains")
            return
        x_max = max(self.total_steps or 0, max(p[0] for p in points), 1)
        y_values = [p[1] for p in points]
        y_min, y_max = min(y_values), max(y_values)
        if y_max - y_min < 1e-6:
            y_min, y_max = y_min - 0.5, y_max + 0.5
        pad = (y_max - y_min) * 0.08
        y_min, y_max = max(0.0, y_min - pad), y_max + pad

        def to_screen(step: float, loss: float) -> QPointF:
            x = plot.left() + plot.width() * step / x_max
            y = plot.bottom() - plot.height() * (loss - y_min) / (y_max - y_min)
            return QPointF(x, y)

        painter.setPen(text)
        for i in range(5):
            value = y_min + (y_max - y_min) * i / 4
            y = to_screen(0, value).y()
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(text)
            painter.drawText(QRectF(0, y - 8, 44, 16),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             f"{value:.2f}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 4, plot.width(), 20),
                         Qt.AlignmentFlag.AlignRight, f"step {int(x_max)}")
        for series, colour, label, row in ((self.train, TRAIN_COLOUR, "training", 0),
                                           (self.validation, VALIDATION_COLOUR,
                                            "validation", 1)):
            if not series:
                continue
            path = QPainterPath(to_screen(*series[0]))
            for point in series[1:]:
                path.lineTo(to_screen(*point))
            painter.setPen(QPen(colour, 2))
            painter.drawPath(path)
            if len(series) == 1 or colour == VALIDATION_COLOUR:
                for point in series:
                    painter.drawEllipse(to_screen(*point), 2.5, 2.5)
            legend_y = plot.top() + 6 + row * 16
            painter.drawLine(QPointF(plot.right() - 150, legend_y + 6),
                             QPointF(plot.right() - 132, legend_y + 6))
            painter.setPen(text)
            painter.drawText(QRectF(plot.right() - 128, legend_y, 124, 14),
                             Qt.AlignmentFlag.AlignLeft, f"{label} {series[-1][1]:.3f}")
        painter.end()
