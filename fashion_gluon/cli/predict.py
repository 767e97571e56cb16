"""The prediction commands of ``fashion-gluon``: ``predict``, ``ensemble``,
``validate-submission`` and ``show``. Each command imports what it runs when it runs (see
:mod:`.run`)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..codec import DECODERS
from ..data.layout import KEYPOINT_FORMATS
from ..data.sources import HELD_OUT_SPLITS
from ..errors import FashionGluonError
from ..inference.runtimes import PRECISIONS, RUNTIME_CHOICES
from .common import add_test_time_options, data_root_of, parse_ctx

if TYPE_CHECKING:
    from ..inference.predictor import Predictor


def cmd_predict(args) -> None:
    from ..data.coco import load_coco
    from ..data.sources import is_test_list, test_source
    from ..data.submission import save_submission
    from ..inference.predictor import Predictor
    from ..metrics import format_table, normalized_error
    from ..metrics_coco import coco_results, write_results

    predictor = Predictor(args.checkpoint, flip=args.flip, scales=args.scales, cascade=args.cascade,
                          ctx=parse_ctx(args.ctx), batch_size=args.batch, num_workers=args.workers, progress=True,
                          precision=args.precision, runtime=args.runtime, decode=args.decode,
                          stage1=args.stage1 or (None if args.one_stage else "auto"))
    if args.images:
        return _predict_images(args, predictor)
    if args.test and args.split != "test":
        raise FashionGluonError("--test names a test list; it cannot go with --split val")
    data = args.test or data_root_of(args.data_root, args.checkpoint[0])
    tic = time.perf_counter()
    rows, keypoints = predictor.predict_split(data, args.split, scores=True)
    seconds = time.perf_counter() - tic
    source = rows.sources[0]
    if args.format == "coco":  # ids and keypoint order of the COCO file the rows came from, if they did
        write_results(args.out, coco_results(rows, keypoints, load_coco(source.file) if source.file.suffix == ".json"
                                             else None))
    else:
        listed = test_source(data, truth=False).file if args.split == "test" else None
        test_list = listed if listed is not None and is_test_list(listed) else None  # else: the rows themselves
        save_submission(args.out, rows, keypoints[..., :2], test_list, source.images)
    report = {"out": str(args.out), "images": len(rows), "seconds": seconds, "seconds_per_image": seconds / len(rows),
              **score_summary(rows, keypoints)}
    if rows.keypoints is not None:
        result = normalized_error(keypoints[..., :2], rows.keypoints, rows.categories, rows.schema)
        report["ne"] = result["ne"]
        if not args.json:
            print(format_table(result))
    print(json.dumps(report))


def score_summary(rows, keypoints) -> dict:
    """``mean_score`` over every predicted keypoint of its row's category and ``per_keypoint_score``
    (the mean per keypoint name) of ``keypoints`` (N, K, 3) = (x, y, score)."""
    mask = rows.schema.category_mask(rows.categories)
    scores = keypoints[..., 2]
    return {"mean_score": float(scores[mask].mean()) if mask.any() else None,
            "per_keypoint_score": {name: float(scores[mask[:, k], k].mean())
                                   for k, name in enumerate(rows.schema.keypoints) if mask[:, k].any()}}


def _predict_images(args, predictor: Predictor) -> None:
    """``predict --images``: any image files, folders or globs; unreadable files are reported
    (one line each, on stderr) and the others predicted into ``--out`` (and ``--overlay`` pictures,
    each point's score written beside it)."""
    from ..data.images import expand_image_paths, read_image
    from ..data.submission import write_submission
    from ..metrics_coco import coco_results, write_results
    from ..visualize import draw_keypoints, save_image

    paths = expand_image_paths(args.images)
    tic = time.perf_counter()
    rows, keypoints, skipped = predictor.predict_files(paths, args.category, scores=True)
    seconds = time.perf_counter() - tic
    for line in skipped:
        print(f"fashion-gluon predict: skipped {line}", file=sys.stderr)
    if not len(rows):
        raise FashionGluonError(f"none of the {len(paths)} image(s) could be read (listed above)")
    if args.format == "coco":  # image ids 1..N in the order the images were listed
        write_results(args.out, coco_results(rows, keypoints))
    else:
        write_submission(args.out, rows.image_ids, rows.categories, keypoints[..., :2], rows.schema)
    if args.overlay:
        for image_id, category, points in zip(rows.image_ids, rows.categories, keypoints):
            picture = draw_keypoints(read_image(image_id), points[:, :2], category, schema=rows.schema,
                                     scores=points[:, 2])
            save_image(Path(args.overlay) / f"{Path(image_id).stem}.png", picture)
    print(json.dumps({"out": str(args.out), "images": len(rows), "skipped": len(skipped), "seconds": seconds,
                      "seconds_per_image": seconds / len(rows), "overlay": args.overlay,
                      **score_summary(rows, keypoints)}))


def cmd_ensemble(args) -> None:
    from ..inference.ensemble import write_ensemble

    rows = write_ensemble(args.submissions, args.out, args.weights)
    print(json.dumps({"out": str(args.out), "images": len(rows), "submissions": len(args.submissions)}))


def cmd_validate(args) -> None:
    from ..data.submission import validate_submission

    image_root = None if args.no_image_check else (args.image_root or Path(args.test).parent)
    problems = validate_submission(args.test, args.submission, image_root, args.schema)
    for problem in problems:
        print(problem)
    if problems:
        raise FashionGluonError(f"{args.submission} has {len(problems)} problem(s) (listed above)")
    print(f"{args.submission}: valid")


def cmd_show(args) -> None:
    from ..tools.show import show

    written = show(args.pred, args.data_root, args.out, args.truth, args.worst, args.limit,
                   args.checkpoint or (), args.image, not args.no_flip, parse_ctx(args.ctx), args.schema)
    print(json.dumps({name: str(path) for name, path in written.items()}, indent=1))


def register(sub) -> None:
    """Add ``predict``, ``ensemble``, ``validate-submission`` and ``show`` to ``sub``
    (the ``add_subparsers`` object of the ``fashion-gluon`` parser)."""
    p = sub.add_parser("predict", help="predict a split into a validated submission CSV, or any images (--images)")
    p.add_argument("--checkpoint", action="append", required=True, metavar="RUN_DIR",
                   help="a run directory; repeat for per-category models or an ensemble")
    p.add_argument("--data-root", help="data-root folder of ROOT/test/test.csv (default: the first run's)")
    p.add_argument("--test", metavar="FILE[:IMAGE_DIR]",
                   help="the test list to predict, in any folder: a test.csv (image_id,image_category) or a COCO "
                        "JSON (its boxes); image paths relative to IMAGE_DIR, default the file's folder")
    p.add_argument("--split", default="test", choices=HELD_OUT_SPLITS)
    p.add_argument("--out", required=True, help="submission CSV (or, with --format coco, COCO results JSON) to write")
    p.add_argument("--format", choices=KEYPOINT_FORMATS, default="csv",
                   help="csv: the FashionAI submission (x_y_1 cells); coco: COCO keypoint results [{image_id, "
                        "category_id, keypoints: [x, y, score]*K, score}], the object's score the mean of its "
                        "keypoints' scores (a keypoint's score: its fused heatmap's maximum); ids from the COCO test "
                        "file, else images numbered 1.. in the list's order and categories in the schema's")
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="predict these image files, folders or globs instead of a split (keypoints CSV, image_id = path)")
    p.add_argument("--category", help="--images: the category they show (default: the checkpoints' one category)")
    p.add_argument("--overlay", metavar="DIR", help="--images: also draw each prediction into DIR/<name>.png")
    add_test_time_options(p)
    stages = p.add_mutually_exclusive_group()
    stages.add_argument("--stage1", action="append", metavar="RUN_DIR",
                        help="two-stage prediction: this checkpoint (repeat for several) finds each garment's box on "
                             "the whole image, --checkpoint predicts on its crop (a model trained with "
                             "data.box_crop_p > 0); default: a checkpoint trained on whole images and crops "
                             "(0 < data.box_crop_p < 1, as configs/cpu_fast.yaml) is its own first stage")
    stages.add_argument("--one-stage", action="store_true",
                        help="predict on the whole image (or object box) even with a model that is its own first stage")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--ctx", default="cpu", help="cpu or gpu0,gpu1,...")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="bf16: run fp32 models in bfloat16 (CPUs with AVX512-BF16/AMX); INT8 models come from "
                        "`quantize` (--format onnx: run in INT8 by OpenVINO or ONNX Runtime)")
    p.add_argument("--runtime", default="auto", choices=RUNTIME_CHOICES,
                   help="what runs the network; auto: OpenVINO (else ONNX Runtime) for ONNX exports, MXNet for runs "
                        "and symbol exports; everything around the network is the same")
    p.add_argument("--decode", choices=DECODERS, help="decoding rule instead of the checkpoints' codec.decode: "
                                                      "dark (sub-pixel, for sharp maps) or quarter (argmax + ¼ px)")
    p.add_argument("--json", action="store_true", help="print only the JSON summary (with mean_score and "
                                                       "per_keypoint_score: the keypoints' mean heatmap maxima)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("ensemble", help="average the coordinates of finished submission CSVs")
    p.add_argument("submissions", nargs="+", metavar="CSV")
    p.add_argument("--out", required=True)
    p.add_argument("--weights", type=float, nargs="+", help="one per CSV (normalized)")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("validate-submission", help="check a submission against test.csv; exit 0 when valid")
    p.add_argument("--test", required=True, help="the test list (test/test.csv)")
    p.add_argument("--schema", help="keypoint schema: a shipped name or a YAML/JSON file (default: fashionai)")
    p.add_argument("--submission", required=True)
    p.add_argument("--image-root", help="folder of the test images (default: the test list's folder)")
    p.add_argument("--no-image-check", action="store_true", help="skip the inside-the-image check")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("show", help="pictures of a prediction: overlays, worst images, NE chart, heatmaps")
    p.add_argument("--pred", required=True, help="prediction / submission CSV")
    p.add_argument("--truth", help="ground-truth CSV (train.csv layout)")
    p.add_argument("--schema", help="keypoint schema: a shipped name or a YAML/JSON file (default: fashionai)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--worst", type=int, default=8, help="images in the worst-NE gallery")
    p.add_argument("--limit", type=int, default=16, help="images in the overlay gallery")
    p.add_argument("--checkpoint", action="append", metavar="RUN_DIR", help="for the heatmap montage")
    p.add_argument("--image", help="image_id of the heatmap montage (default: the worst, else the first)")
    p.add_argument("--no-flip", action="store_true", help="heatmaps without the flip test")
    p.add_argument("--ctx", default="cpu")
    p.set_defaults(func=cmd_show)
