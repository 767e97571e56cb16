"""The main job: synthetic data → train a small CPN on all categories → SWA → evaluate →
predict the test split → validated submission, pictures and the NE table. No network needed."""
from __future__ import annotations

import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..build import build_loss, build_model
from ..config import load_config
from ..data.dataset import SplitDataset
from ..data.images import read_image
from ..data.layout import TEST_LIST, TEST_TRUTH
from ..data.submission import validate_submission, write_submission
from ..data.synthetic import generate_dataset
from ..engine.step import train_step
from ..engine.swa import run_swa
from ..engine.train import fit
from ..engine.trainer import enable_mixed_precision, resolve_precision
from ..errors import DataError
from ..fileio import write_json
from ..inference.load import load_model
from ..inference.predictor import Predictor
from ..metrics import evaluate_csv, format_table, normalized_error, per_image_error
from ..runs import CURVES, SWA_DIR
from ..visualize import draw_comparison, gallery, plot_per_keypoint
from .bench_train import random_batch

#: The from-scratch recipe is configs/cpu_fast.yaml (see docs/recipes.md); the demo adds two
#: overrides. Validate once, at the end (each pass costs ≈ 3 s, and with MXNet's threaded engine
#: training ran 10-20 % slower after the first one; the CLI now uses NaiveEngine on CPU).
#: And one stage: at the demo's budget on its own data (garments filling most of the frame) the
#: one-stage model with the cascade scored test NE 6.38 % against 7.05 % for cpu_fast's two stages
#: (22 / 20 bf16 epochs; docs/recipes.md, "Which recipe").
DEMO_RECIPE = "cpu_fast"
DEMO_OVERRIDES = ["train.val_every=1000", "data.box_crop_p=0"]
MAX_EPOCHS = 1000
MIN_TRAIN_S = 5.0
# Training in fit reaches about this share of measure_train_rate (data loading, checkpoints).
REAL_RATE_SHARE = 0.85
# Seconds for predicting and evaluating the validation and test splits and drawing the pictures.
FINAL_STEPS_S = 60.0
# Test-time scales (with flip) for the final predictions. Measured on two demo models' validation
# split (flip alone / + scales 1, 1.2 / + scales 0.8, 1, 1.2): 8.28 / 7.72 / 7.87 % and
# 7.87 / 6.88 / 7.43 %; training crops (crop_area 0.8-1) show garments up to 1.12x larger.
TEST_SCALES = (1.0, 1.2)
# The two-pass crop cascade on top, on two cpu_fast models (AVX2, fp32): 8 epochs (the demo's),
# validation NE 10.67 -> 10.21 % and test 11.47 -> 11.06 %; 15 epochs, test 8.54 -> 8.08 %; the
# demo's 22 bf16 epochs on an AVX512-BF16 CPU, test 6.72 -> 6.34 % (docs/recipes.md); ≈ 20 s more
# of prediction. With it one stage is ahead of two-stage training at this budget.
TEST_CASCADE = True


def measure_train_rate(config: dict, ctx: list, steps: int = 8, warmup: int = 2) -> float:
    """Training images/s of the config's model on random data, after ``warmup`` steps (the
    first steps allocate memory and create oneDNN kernels)."""
    net = build_model(config, "all", ctx)
    loss_fn, batch = build_loss(config), random_batch(config, ctx)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.0})
    tic = None
    for step in range(warmup + steps):
        if step == warmup:
            tic = time.time()
        train_step(net, loss_fn, trainer, batch, ctx)
    return steps * batch[0].shape[0] / (time.time() - tic)


def _pictures(out: Path, dataset: SplitDataset, pred: np.ndarray, count: int = 12) -> Path:
    """Prediction-vs-truth overlays of the worst and best test images, as one gallery."""
    ann = dataset.annotations
    errors = per_image_error(pred, ann.keypoints, ann.categories)
    order = np.argsort(np.nan_to_num(errors, nan=-1.0))[::-1]
    picks = list(order[: count // 2]) + list(order[::-1][: count - count // 2])
    images = [draw_comparison(read_image(dataset.image_path(i)), pred[i], ann.keypoints[i], ann.categories[i])
              for i in picks]
    titles = [f"{ann.categories[i]} {errors[i]:.1f}%" for i in picks]
    path = out / "overlays.png"
    gallery(images, path, cols=6, titles=titles)
    return path


def run_demo(out: "str | Path" = "runs/demo", per_category: int = 150, budget_s: float = 560.0,
             seed: int = 0, progress: bool = True) -> dict:
    """Run the whole pipeline into ``out`` in about ``budget_s`` seconds (training gets what the
    other steps leave, estimated from a measured training rate); returns and prints the figures."""
    out, started, ctx = Path(out), time.time(), [mx.cpu()]
    data_root, run_dir = out / "data", out / "run"
    print(f"[1/6] synthetic data set ({per_category} images per category) -> {data_root}")
    generate_dataset(data_root, per_category=per_category, seed=seed, progress=progress)

    config = load_config(DEMO_RECIPE, DEMO_OVERRIDES + [f"train.seed={seed}"])  # precision: the recipe's auto
    config["train"]["precision"] = resolve_precision(config["train"]["precision"], ctx)
    train_rows = len(SplitDataset(data_root, "all", "train", check=False, val_fraction=config["data"]["val_fraction"]))
    enable_mixed_precision(config["train"]["precision"], ctx)  # before any model is built
    rate = measure_train_rate(config, ctx)  # only to reserve time for SWA's epochs
    epoch_s = train_rows / (REAL_RATE_SHARE * rate)
    swa_epochs = config["swa"]["cycles"] * config["swa"]["cycle_epochs"]
    bn_share = min(int(config["swa"]["bn_images"]), train_rows) / train_rows  # BN recalibration: forward + backward
    train_budget = budget_s - (time.time() - started) - (swa_epochs + bn_share) * epoch_s - FINAL_STEPS_S
    # the lr schedule is laid over the time budget (engine.schedule.BudgetSchedule): training ends
    # annealed when the budget ends; the epoch count is only an upper bound
    config["train"].update(epochs=MAX_EPOCHS, time_budget_s=max(train_budget, MIN_TRAIN_S))
    print(f"[2/6] training {config['model']['name']} on all categories: {train_rows} images, ~{rate:.1f} img/s "
          f"measured, for {config['train']['time_budget_s']:.0f} s")
    trained = fit(data_root, "all", run_dir, config, ctx=ctx, progress=progress)
    epochs = trained["epoch"]

    print("[3/6] stochastic weight averaging")
    swa = run_swa(run_dir, data_root, run_dir / SWA_DIR, ctx=ctx, progress=progress)
    final_dir = run_dir / SWA_DIR if swa["val_ne_after"] <= swa["val_ne_before"] else run_dir

    model = load_model(final_dir, ctx)
    predictor = Predictor([model], flip=True, scales=TEST_SCALES, cascade=TEST_CASCADE, ctx=ctx, progress=progress)
    print(f"[4/6] predicting the validation and test splits (flip, scales {', '.join(map(str, TEST_SCALES))}"
          f"{', cascade' if TEST_CASCADE else ''})")
    val_rows, val_pred = predictor.predict_split(data_root, "val")
    val_result = normalized_error(val_pred, val_rows.keypoints, val_rows.categories)
    test_rows, pred = predictor.predict_split(data_root, "test")
    submission = out / "submission.csv"
    write_submission(submission, test_rows.image_ids, test_rows.categories, pred)
    problems = validate_submission(data_root / TEST_LIST, submission, (data_root / TEST_LIST).parent)
    if problems:
        raise DataError("the demo submission is invalid:\n" + "\n".join(problems))

    print("[5/6] evaluating")
    test_result = evaluate_csv(data_root / TEST_TRUTH, submission)
    plot_per_keypoint(test_result, out / "per_keypoint.png")
    _pictures(out, SplitDataset(data_root, "all", "test", check=False), pred)  # same rows

    summary = {
        "seconds": round(time.time() - started, 1), "epochs": epochs, "test_time_scales": list(TEST_SCALES),
        "test_time_cascade": TEST_CASCADE,
        "val_ne_before_swa": swa["val_ne_before"], "val_ne_after_swa": swa["val_ne_after"],
        "val_ne_swa_without_bn_recalibration": swa["val_ne_averaged"],
        "val_ne_tta": val_result["ne"], "test_ne_tta": test_result["ne"],
        "submission": str(submission), "model": str(final_dir),
    }
    write_json(out / "summary.json", summary)
    print("[6/6] done\n")
    print(format_table(test_result))
    print(f"\nval NE (single pass) before SWA {swa['val_ne_before']:.2f} %, after SWA {swa['val_ne_after']:.2f} %; "
          f"with flip + scales{' + cascade' if TEST_CASCADE else ''}: val NE {val_result['ne']:.2f} %, "
          f"test NE {test_result['ne']:.2f} %; "
          f"{summary['seconds']:.0f} s in all")
    print(f"submission: {submission} (valid); pictures: {out}/overlays.png, {out}/per_keypoint.png, "
          f"{run_dir / CURVES}")
    return summary
