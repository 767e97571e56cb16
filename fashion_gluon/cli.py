"""The ``fashion-gluon`` command line. Heavy modules are imported inside each command so
``--help`` is instant; package errors are printed as one line (exit status 2)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import FashionGluonError


def _size(text: str) -> tuple[int, int]:
    """``'256x192'`` (H x W) or ``'256'`` → (H, W)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be H or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"size must be H or HxW, got {text!r}")
    return (values[0], values[-1])


def _print_result(result: dict, as_json: bool) -> None:
    from .metrics import format_table
    print(json.dumps(result) if as_json else format_table(result))


def cmd_synth(args) -> None:
    from .data.synthetic import generate_dataset
    summary = generate_dataset(args.root, per_category=args.per_category, seed=args.seed,
                               workers=args.workers, vary_size=args.vary_size, progress=not args.quiet)
    print(json.dumps(summary, indent=1))


def cmd_evaluate(args) -> None:
    if args.checkpoint:
        from .engine.evaluate import evaluate_run
        result = evaluate_run(args.checkpoint, args.data_root, args.split, flip=args.flip,
                              ctx=_ctx(args.ctx))
    elif args.truth and args.pred:
        from .metrics import evaluate_csv
        result = evaluate_csv(args.truth, args.pred)
    else:
        raise FashionGluonError("evaluate needs --truth and --pred, or --checkpoint")
    _print_result(result, args.json)


def _ctx(text: str):
    from .engine.train import parse_ctx
    return parse_ctx(text)


def cmd_train(args) -> None:
    from .config import load_config
    from .engine.train import fit
    config = None if args.resume and not (args.config or args.overrides) else load_config(args.config, args.overrides)
    out = args.resume or args.out
    if not out:
        raise FashionGluonError("train needs --out RUN_DIR (or --resume RUN_DIR)")
    if not args.resume and not args.category:
        raise FashionGluonError("train needs --category")
    record = fit(args.data_root, args.category, out, config, resume=bool(args.resume),
                 init_from=args.init_from, ctx=_ctx(args.ctx))
    print(json.dumps({k: v for k, v in record.items() if not k.startswith("val_per")}))


def cmd_swa(args) -> None:
    from .engine.swa import run_swa
    result = run_swa(args.checkpoint, data_root_of(args.data_root, args.checkpoint), args.out, args.cycles,
                     args.cycle_epochs, args.lr_max, args.lr_min, ctx=_ctx(args.ctx))
    print(json.dumps(result))


def data_root_of(data_root: "str | None", checkpoint) -> str:
    """``data_root`` if given, else the data ``checkpoint`` (a run or an export) was trained on."""
    if data_root:
        return data_root
    from .engine.checkpoint import LAST, load_state, read_json
    from .export import META
    checkpoint = Path(checkpoint)
    return load_state(checkpoint)["data_root"] if (checkpoint / LAST).exists() else read_json(checkpoint / META)["data_root"]


def cmd_summary(args) -> None:
    from .models import check_input_size
    from .summary import format_summary, summarize
    from .config import parse_override
    kwargs = dict(parse_override(option) for option in args.options)
    check_input_size(args.model, args.input, **kwargs)
    print(format_summary(summarize(args.model, args.input, args.keypoints, **kwargs)))


def cmd_weights(args) -> None:
    from .models.pretrained import backbone_weight_status
    for name, path, present in backbone_weight_status():
        print(f"{'present' if present else 'MISSING'}  {name:24s} {path}")


def cmd_bench(args) -> None:
    from . import bench
    result = bench.run(args.what, model=args.model, batch=args.batch, size=args.size,
                       data_root=args.data_root, rec=args.rec)
    print(json.dumps(result, indent=1) if args.json else bench.format_result(result))


def cmd_demo(args) -> None:
    from .demo import run_demo
    run_demo(args.out, per_category=args.per_category, budget_s=args.budget)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashion-gluon",
        description="Clothing keypoint detection (FashionAI 2018) with MXNet/Gluon. "
                    "Run `fashion-gluon COMMAND --help` for a command's options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="draw a synthetic data set in the FashionAI layout")
    p.add_argument("root")
    p.add_argument("--per-category", type=int, default=100, help="images per category (train + test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--vary-size", action="store_true", help="random image sizes instead of 512x512")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("evaluate", help="normalized error of a prediction CSV or a checkpoint")
    p.add_argument("--truth", help="ground-truth CSV (train.csv layout)")
    p.add_argument("--pred", help="prediction / submission CSV")
    p.add_argument("--checkpoint", help="run directory to evaluate instead of a CSV")
    p.add_argument("--data-root", help="FashionAI layout root (default: the run's)")
    p.add_argument("--split", default="val", choices=("val", "test", "train"))
    p.add_argument("--flip", action="store_true", help="flip test")
    p.add_argument("--ctx", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train a model of one category (or all)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--category", choices=("blouse", "outwear", "dress", "skirt", "trousers", "all"))
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--out", help="run directory")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
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
    p.add_argument("--ctx", default="cpu")
    p.set_defaults(func=cmd_swa)

    p = sub.add_parser("summary", help="parameters and GFLOPs (multiply-adds) of a model")
    p.add_argument("model")
    p.add_argument("--input", type=_size, default=(256, 192), help="H x W, e.g. 256x192")
    p.add_argument("--keypoints", type=int, default=24)
    p.add_argument("--options", nargs="*", default=[], metavar="key=value",
                   help="model constructor options, e.g. --options num_stacks=8")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("weights", help="which pretrained backbone files are present")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("bench", help="speed benchmarks: data pipeline, models, or all")
    p.add_argument("what", choices=("data", "model", "all"))
    p.add_argument("--model", default="cpn_resnet50")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--data-root", help="images to read (default: a small synthetic set)")
    p.add_argument("--rec", action="store_true", help="data: also time the same pipeline from a RecordIO pack")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="the main job: synthetic data -> train -> SWA -> evaluate -> submission")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--per-category", type=int, default=150)
    p.add_argument("--budget", type=float, default=560.0,
                   help="seconds for the whole demo; training gets what the other steps leave")
    p.set_defaults(func=cmd_demo)

    from .cli_predict import register as register_predict
    from .cli_scale import register as register_scale
    register_predict(sub)
    register_scale(sub)
    return parser


def use_all_cores() -> None:
    """MXNet's CPU build starts one OpenMP thread per op on this kind of machine unless told
    otherwise; use every core this process may run on (an explicit OMP_NUM_THREADS wins).
    Must run before mxnet is imported."""
    if "mxnet" not in sys.modules:
        os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))


def use_naive_engine_on_cpu(argv: "list[str]") -> None:
    """CPU-only runs use MXNet's NaiveEngine (each op runs in the calling thread). For the
    hybridized graphs here it trains as fast as the threaded engine, and it avoids a 10-20 %
    training slow-down the threaded engine showed for the rest of a process after the first
    validation pass (demo model, 160², bf16: 25.4 / 26.4 / 25.7 img/s in epochs 1-3 against
    24.9 / 22.4 / 22.9). GPU runs and parameter-server processes (DMLC_ROLE set) keep the
    threaded engine; an explicit MXNET_ENGINE_TYPE wins. Must run before mxnet is imported."""
    if "mxnet" in sys.modules or "DMLC_ROLE" in os.environ or any("gpu" in arg for arg in argv):
        return
    os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")


def main(argv: "list[str] | None" = None) -> int:
    use_all_cores()
    use_naive_engine_on_cpu(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FashionGluonError, FileNotFoundError, ValueError) as error:
        print(f"fashion-gluon {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
