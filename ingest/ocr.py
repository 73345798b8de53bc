"""Text of an image by OCR with RapidOCR, whose ONNX models ship inside its wheel.

The engine is built once per process, on first use, and runs offline on the CPU.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _engine() -> Any:
    import logging

    from rapidocr import RapidOCR

    engine = RapidOCR(params={"Global.log_level": "error"})
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return engine


def read_image(image: Any) -> str:
    """The text of a PIL image, one detected line per line, top to bottom.

    Args:
        image: A PIL image (a rendered page, a picture).
    """
    import numpy as np

    result = _engine()(np.asarray(image.convert("RGB")))
    texts = getattr(result, "txts", None) or ()
    boxes = getattr(result, "boxes", None)
    if boxes is None or len(texts) == 0:
        return ""
    # boxes: 4 corner points each; group boxes whose vertical centres are close into one line
    items = sorted(
        (
            (float(box[:, 1].mean()), float(box[:, 0].min()), float(np.ptp(box[:, 1])), text)
            for box, text in zip(boxes, texts)
        ),
    )
    lines: list[list[tuple[float, str]]] = []
    centre = height = 0.0
    for y, x, h, text in items:
        if lines and abs(y - centre) <= 0.5 * max(h, height):
            lines[-1].append((x, text))
        else:
            lines.append([(x, text)])
            centre, height = y, h
    return "\n".join(" ".join(t for _, t in sorted(line)) for line in lines)
