"""Training logs of a run directory: per-epoch JSON lines, tensorboardX scalars, a curves PNG."""
from __future__ import annotations

import json
from pathlib import Path

from tensorboardX import SummaryWriter

from ..runs import CURVES, LOG, TENSORBOARD, read_log
from ..visualize import plot_curves


class RunLogger:
    """Per-epoch JSON lines, tensorboardX scalars and a curves PNG in the run directory."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.writer = run_dir, SummaryWriter(str(run_dir / TENSORBOARD))

    def step(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def sources(self, counts: list, train: int, val: int) -> None:
        """One line naming each training source with its images and objects, and the split sizes."""
        with open(self.run_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps({"sources": [{"file": str(source.file), "images": str(source.images),
                                                  "image_count": images, "objects": objects}
                                                 for source, images, objects in counts],
                                     "train_objects": train, "val_objects": val}) + "\n")

    def epoch(self, record: dict) -> None:
        with open(self.run_dir / LOG, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for key in ("loss", "lr", "val_ne", "img_per_s"):
            if key in record:
                self.writer.add_scalar(f"epoch/{key}", record[key], record["epoch"])
        self.writer.flush()
        plot_curves(read_log(self.run_dir), self.run_dir / CURVES)

    def close(self) -> None:
        self.writer.close()
