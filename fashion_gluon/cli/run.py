"""The training-side commands: ``synth``, ``train``, ``swa``, ``evaluate``, ``summary``,
``weights``, ``bench`` and ``demo``. Each command imports what it runs (MXNet and the modules
that use it) when it runs, so that the parser and ``--help`` do not."""
from __future__ import annotations

import json

from ..data.layout import KEYPOINT_FORMATS
from ..data.sources import HELD_OUT_SPLITS, SPLITS
from ..errors import FashionGluonError
from ..tools.train_variants import DEFAULT_VARIANTS as TRAIN_VARIANTS
from ..tools.train_variants import OPTIONS as TRAIN_OPTIONS
from .common import add_test_time_options, data_root_of, parse_ctx, parse_scales, parse_size, print_result


def resume_config(run_dir: str, overrides: "list[str]") -> dict:
    """The config of a run to resume with ``overrides`` applied (a clear error if ``run_dir`` is no run)."""
    from ..runs import LAST, is_run, run_config

    if not is_run(run_dir):
        raise FashionGluonError(f"{run_dir} holds no checkpoint (no {LAST}); nothing to resume")
    return run_config(run_dir, overrides)


def cmd_synth(args) -> None:
    from ..data.synthetic import SCALE_RANGE, generate_dataset
    from ..data.synthetic_schema import generate_schema_dataset
    from ..schema import load_schema

    if args.schema is None or load_schema(args.schema) == load_schema():  # FashionAI's garments
        if args.format != "csv":
            raise FashionGluonError("the FashionAI garment drawer writes the CSV layout; --format coco needs "
                                    "--schema FILE of another schema")
        summary = generate_dataset(args.root, per_category=args.per_category, seed=args.seed,
                                   workers=args.workers, vary_size=args.vary_size, progress=not args.quiet,
                                   garment_scale=args.garment_scale or SCALE_RANGE)
    elif args.garment_scale:
        raise FashionGluonError("--garment-scale is an option of the FashionAI garment drawer, not of --schema")
    else:
        summary = generate_schema_dataset(args.root, args.schema, args.per_category, args.seed, args.format,
                                          progress=not args.quiet)
    print(json.dumps(summary, indent=1))


def cmd_evaluate(args) -> None:
    from ..inference.evaluate import evaluate_run
    from ..metrics import evaluate_csv

    if args.checkpoint:
        result = evaluate_run(args.checkpoint, args.data_root, args.split, flip=args.flip,
                              ctx=parse_ctx(args.ctx), scales=args.scales, cascade=args.cascade)
    elif args.truth and args.pred and args.truth.endswith(".json"):  # COCO truth, COCO results
        from ..metrics_coco import evaluate_coco, format_ap

        result = evaluate_coco(args.truth, args.pred, args.schema)
        if not args.json:
            print(format_ap(result))
    elif args.truth and args.pred:
        result = evaluate_csv(args.truth, args.pred, args.schema)
    else:
        raise FashionGluonError("evaluate needs --truth and --pred, or --checkpoint")
    print_result(result, args.json)


def cmd_train(args) -> None:
    from ..config import load_config
    from ..engine.train import fit

    if args.resume and not args.config:  # overrides apply to the run's own configuration
        config = resume_config(args.resume, args.overrides) if args.overrides else None
    else:
        config = load_config(args.config, args.overrides)
    out = args.resume or args.out
    if not out:
        raise FashionGluonError("train needs --out RUN_DIR (or --resume RUN_DIR)")
    if not args.resume and not args.category:
        raise FashionGluonError("train needs --category")
    if args.train:
        if args.resume:
            raise FashionGluonError("--resume trains on the run's own sources (data.train_files in its config.yaml); "
                                    "drop --train")
        from ..data.layout import parse_source
        config["data"]["train_files"] = [str(parse_source(spec)) for spec in args.train]
    elif not args.resume and not args.data_root and not config["data"]["train_files"]:
        raise FashionGluonError("train needs --data-root ROOT or --train FILE[:IMAGE_DIR] (repeat for more sources)")
    record = fit(args.data_root, args.category, out, config, resume=bool(args.resume),
                 init_from=args.init_from, ctx=parse_ctx(args.ctx))
    print(json.dumps({k: v for k, v in record.items() if not k.startswith("val_per")}))


def cmd_swa(args) -> None:
    from ..engine.swa import run_swa

    result = run_swa(args.checkpoint, data_root_of(args.data_root, args.checkpoint), args.out, args.cycles,
                     args.cycle_epochs, args.lr_max, args.lr_min, args.bn_images, ctx=parse_ctx(args.ctx))
    print(json.dumps(result))


def cmd_summary(args) -> None:
    from ..config import parse_override
    from ..models import check_input_size
    from ..tools.summary import format_summary, summarize

    kwargs = dict(parse_override(option) for option in args.options)
    check_input_size(args.model, args.input, **kwargs)
    print(format_summary(summarize(args.model, args.input, args.keypoints, **kwargs)))


def cmd_weights(args) -> None:
    from ..models.fetch import fetch_weights
    from ..models.pretrained import backbone_weight_status

    if args.fetch:
        for row in fetch_weights(args.fetch):
            print(row.summary())
        return
    for name, path, present in backbone_weight_status():
        print(f"{'present' if present else 'MISSING'}  {name:24s} {path}")


def _variants(given: "list[str] | None") -> list[str]:
    """``--variants`` as a list: each argument may hold several, comma-separated."""
    return [v for item in given or () for v in item.split(",") if v]


def cmd_bench(args) -> None:
    from ..tools.bench import format_result as format_bench
    from ..tools.bench import run as bench_run
    from ..tools.bench_infer import bench_infer, format_infer
    from ..tools.codec_floor import decoding_floor, format_floor

    if args.what == "codec":
        if not args.data_root:
            raise FashionGluonError("bench codec needs --data-root (a FashionAI layout with annotations)")
        floor = decoding_floor(args.data_root, args.sizes, progress=True)
        print(json.dumps(floor, indent=1) if args.json else format_floor(floor))
        return
    if args.what == "train":
        from ..tools.bench_train import bench_train, format_train

        result = bench_train(args.config, args.overrides, _variants(args.variants) or list(TRAIN_VARIANTS), args.batch, args.size,
                             args.rounds or 5, args.steps, profile=args.profile is not None, data_root=args.data_root)
        print(json.dumps(result, indent=1) if args.json else format_train(result, args.profile or 0))
        return
    if args.overrides or args.config:
        raise FashionGluonError(f"bench {args.what} takes no --config or key=value overrides (bench train does)")
    if args.what == "int8":
        from ..tools.int8_audit import DEFAULT_VARIANTS, compare_placements, format_placements

        result = compare_placements(_variants(args.variants) or DEFAULT_VARIANTS, args.model, args.checkpoint, args.batch or 8,
                                    args.size, args.data_root, args.split, args.rounds or 3)
        print(json.dumps(result, indent=1) if args.json else format_placements(result))
        return
    if args.what == "infer":
        result = bench_infer(args.model, args.checkpoint, args.batch or 8, args.size, args.data_root, args.split,
                             args.rounds or 3)
        print(json.dumps(result, indent=1) if args.json else format_infer(result))
        return
    result = bench_run(args.what, model=args.model, batch=args.batch or 8, size=args.size or 256,
                       data_root=args.data_root, rec=args.rec)
    print(json.dumps(result, indent=1) if args.json else format_bench(result))


def cmd_demo(args) -> None:
    from ..tools.demo import run_demo

    run_demo(args.out, per_category=args.per_category, budget_s=args.budget)


def register(sub) -> None:
    """Add this module's commands to ``sub`` (the ``add_subparsers`` of the root parser)."""
    p = sub.add_parser("synth", help="draw a synthetic data set (FashionAI garments, or objects of any schema)")
    p.add_argument("root")
    p.add_argument("--per-category", type=int, default=100, help="images per category (train + test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--vary-size", action="store_true", help="random image sizes instead of 512x512")
    p.add_argument("--garment-scale", type=parse_scales, metavar="LO,HI",
                   help="range of a garment's extent over the shorter image side (default 0.65,0.95; product "
                        "photos reach down to about 0.4)")
    p.add_argument("--schema", help="draw simple objects of this schema (a YAML/JSON file) instead of garments")
    p.add_argument("--format", choices=KEYPOINT_FORMATS, default="csv",
                   help="csv: the FashionAI layout (columns = the schema's names); coco: annotations.json per split")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("evaluate", help="normalized error of a prediction CSV or a checkpoint; OKS AP of COCO results")
    p.add_argument("--truth", help="ground-truth CSV (train.csv layout), or a COCO keypoint JSON: then --pred is COCO "
                                   "results (predict --format coco) and AP, AP50, AP75 (OKS) come beside NE and PCK")
    p.add_argument("--schema", help="keypoint schema: a shipped name or a YAML/JSON file (default: fashionai)")
    p.add_argument("--pred", help="prediction / submission CSV, or COCO results JSON")
    p.add_argument("--checkpoint", help="run directory to evaluate instead of a CSV")
    p.add_argument("--data-root", help="FashionAI layout root (default: the run's)")
    p.add_argument("--split", default="val", choices=SPLITS)
    add_test_time_options(p)  # with --checkpoint
    p.add_argument("--ctx", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train a model of one category (or all)")
    p.add_argument("--data-root", help="data-root folder: trains on ROOT/train/Annotations/train.csv")
    p.add_argument("--train", action="append", metavar="FILE[:IMAGE_DIR]",
                   help="a training source instead: a FashionAI CSV (train.csv, annotations.csv, a test set's "
                        "answers), a COCO JSON or a pack (.rec); repeat to train on their union; image paths are "
                        "relative to IMAGE_DIR, default the file's folder (its parent for an Annotations/ folder)")
    p.add_argument("--category", help="a category of the run's schema, or all")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--out", help="run directory")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR; key=value overrides then apply to its config and may "
                        "change how long it trains, e.g. train.epochs=40 (not the model or data)")
    p.add_argument("--init-from", metavar="RUN_DIR", help="initialize from another run (e.g. the all-category one)")
    p.add_argument("--ctx", default="cpu", help="cpu or gpu0,gpu1,...")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("swa", help="stochastic weight averaging after training")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR")
    p.add_argument("--data-root", help="default: the run's")
    p.add_argument("--out", help="default: RUN_DIR/swa")
    p.add_argument("--cycles", type=int)
    p.add_argument("--cycle-epochs", type=int)
    p.add_argument("--lr-max", type=float)
    p.add_argument("--lr-min", type=float)
    p.add_argument("--bn-images", type=int, help="training images that re-estimate BatchNorm statistics "
                   "(default: the run's swa.bn_images)")
    p.add_argument("--ctx", default="cpu")
    p.set_defaults(func=cmd_swa)

    p = sub.add_parser("summary", help="parameters and GFLOPs (multiply-adds) of a model")
    p.add_argument("model")
    p.add_argument("--input", type=parse_size, default=(256, 192), help="H x W, e.g. 256x192")
    p.add_argument("--keypoints", type=int, help="heatmap channels (default: the default schema's keypoint count)")
    p.add_argument("--options", nargs="*", default=[], metavar="key=value",
                   help="model constructor options, e.g. --options num_stacks=8")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("weights", help="which pretrained backbone files are present; --fetch downloads them",
                       description="List the ImageNet weight files of the backbones in gluoncv's model store "
                                   "($MXNET_HOME/models, default ~/.mxnet/models), or download them. Training never "
                                   "downloads: model.pretrained: true needs the file there.")
    p.add_argument("--fetch", metavar="BACKBONE", help="download gluoncv's ImageNet weights of BACKBONE (a registry "
                   "backbone such as resnet50_v1b or detnet59; an unknown name is answered with the list) or of all, "
                   "from $MXNET_GLUON_REPO (default: Apache's MXNet repository) into the model store, SHA-1 checked; "
                   "a file already there with the right hash is kept; a failed download leaves nothing behind.")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("bench", help="benchmarks: data pipeline, models, all; infer: every runtime x precision; "
                                     "train: interleaved A/B of training-step variants; "
                                     "int8: OpenVINO INT8 placements against fp32; codec: the NE decoding alone costs")
    p.add_argument("what", choices=("data", "model", "all", "infer", "train", "int8", "codec"))
    p.add_argument("overrides", nargs="*", metavar="key=value", help="train: config overrides, e.g. train.optimizer=sgd")
    p.add_argument("--config", help="train: a YAML config or shipped recipe (default cpu_fast, the demo's)")
    p.add_argument("--variants", nargs="+", metavar="VARIANT",
                   help="train: variants (space- or comma-separated), each fp32 or bf16 then +OPTION, +key=value (config) "
                        "or +env.NAME=VALUE (its worker's environment) parts; options: "
                        + "; ".join(f"{k}: {v}" for k, v in TRAIN_OPTIONS.items())
                        + f" (default {','.join(TRAIN_VARIANTS)}; ratios are to the first one measured). "
                        "int8: QDQ variants PLACEMENT[:SCALE[:BITS]], e.g. convs eltwise:tensor:7 (default: every "
                        "placement, and the default placement's weight scales and bits)")
    p.add_argument("--steps", type=int, default=3, help="train: timed steps per variant and round")
    p.add_argument("--profile", type=int, nargs="?", const=12, metavar="TOP",
                   help="train: also each variant's MXNet profile, its TOP operators (default 12)")
    p.add_argument("--model", help="a registry model, random weights (default cpn_resnet50; "
                   "all: cpn_resnet50 and hourglass)")
    p.add_argument("--checkpoint", metavar="RUN_DIR", help="infer, int8: a trained run instead of --model (its input "
                                                            "size, INT8 calibrated on its training images)")
    p.add_argument("--split", choices=HELD_OUT_SPLITS, help="infer, int8 with --checkpoint: also each path's NE on this "
                                                             "split (int8: and its loss against MXNet fp32)")
    p.add_argument("--rounds", type=int, help="infer, int8: interleaved rounds over all paths (best is kept; default 3); "
                                               "train: over all variants (median is kept; default 5)")
    p.add_argument("--batch", type=int, help="batch size (default 8; train: the config's)")
    p.add_argument("--size", type=int, help="square input side (default 256; infer --checkpoint and train: the run's "
                                            "or config's)")
    p.add_argument("--data-root", help="images to read (default: a small synthetic set)")
    p.add_argument("--rec", action="store_true", help="data: also time the same pipeline from a RecordIO pack")
    p.add_argument("--sizes", type=lambda t: tuple(int(v) for v in t.split(",")), default=(160, 256, 384),
                   help="codec: square input sizes, e.g. 160,256,384")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="the main job: synthetic data -> train -> SWA -> evaluate -> submission")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--per-category", type=int, default=150)
    p.add_argument("--budget", type=float, default=560.0,
                   help="seconds for the whole demo; training gets what the other steps leave")
    p.set_defaults(func=cmd_demo)
