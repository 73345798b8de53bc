"""The loss curve as a PNG (Pillow only): training loss per step, smoothed, and validation loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WIDTH, HEIGHT, MARGIN = 720, 400, 56
TRAIN, SMOOTH, VAL = (170, 190, 230), (40, 90, 200), (220, 90, 30)


def plot_losses(rows: list[dict[str, Any]], path: Path) -> None:
    """Draw the ``loss`` and ``val_loss`` rows of a metrics log into ``path``."""
    from PIL import Image, ImageDraw

    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    points = train + val
    if not points:
        draw.text((MARGIN, HEIGHT // 2), "no steps logged", fill="black")
        image.save(path)
        return
    last = max(s for s, _ in points) or 1
    low, high = min(v for _, v in points), max(v for _, v in points)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5

    def xy(step: float, value: float) -> tuple[float, float]:
        x = MARGIN + (WIDTH - 2 * MARGIN) * step / last
        y = HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * (value - low) / (high - low)
        return x, y

    draw.rectangle([MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN], outline="black")
    for n in range(5):
        value = low + (high - low) * n / 4
        _, y = xy(0, value)
        draw.line([MARGIN - 4, y, MARGIN, y], fill="black")
        draw.text((4, y - 6), f"{value:.3f}", fill="black")
    for n in range(5):
        step = last * n / 4
        x, _ = xy(step, low)
        draw.line([x, HEIGHT - MARGIN, x, HEIGHT - MARGIN + 4], fill="black")
        draw.text((x - 10, HEIGHT - MARGIN + 8), f"{step:.0f}", fill="black")
    draw.text((WIDTH // 2 - 12, HEIGHT - 20), "step", fill="black")
    if len(train) > 1:
        draw.line([xy(s, v) for s, v in train], fill=TRAIN, width=1)
        smoothed, level = [], train[0][1]
        for s, v in train:
            level = 0.9 * level + 0.1 * v
            smoothed.append(xy(s, level))
        draw.line(smoothed, fill=SMOOTH, width=2)
    if len(val) > 1:
        draw.line([xy(s, v) for s, v in val], fill=VAL, width=2)
    for s, v in val:
        x, y = xy(s, v)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=VAL)
    draw.text((MARGIN + 8, 12), "training loss (smoothed)", fill=SMOOTH)
    draw.text((MARGIN + 220, 12), "validation loss", fill=VAL)
    image.save(path)
