"""The scale-and-deploy commands of ``fashion-gluon``: ``launch`` (distributed training on
MXNet's parameter server), ``pack`` (RecordIO), ``export`` (symbol / ONNX) and ``quantize``
(INT8). :func:`register` adds them to the CLI's subparsers; each command imports what it runs
when it runs (see :mod:`.run`)."""
from __future__ import annotations

import argparse
import json

from ..data.sources import SPLITS
from ..engine.distributed import DEFAULT_PORT
from ..errors import FashionGluonError
from ..inference.formats import CALIB_MODES, FORMATS, QUANTIZE_FORMATS
from ..inference.qdq import DEFAULT_PLACEMENT, DEFAULT_WEIGHT_SCALE, PLACEMENTS, WEIGHT_BITS, WEIGHT_SCALES
from ..inference.runtimes import ONNX_RUNTIMES
from . import run


def _check_distributed_train(arguments: list[str]) -> None:
    """Refuse ``launch -- train ...`` whose configuration does not use a dist kvstore (each
    worker would train alone, all writing the same run directory)."""
    from ..config import load_config

    parser = argparse.ArgumentParser(prog="fashion-gluon")
    run.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(arguments)
    kvstore = str(load_config(args.config, args.overrides)["train"]["kvstore"])
    if not kvstore.startswith("dist"):
        raise FashionGluonError(f"launch -- train: train.kvstore is {kvstore!r}, so every worker would train "
                                "alone; add the override train.kvstore=dist_sync")


def cmd_launch(args) -> None:
    from ..engine.distributed import check_hosts, fashion_gluon_command, launch

    command = args.worker_command[1:] if args.worker_command[:1] == ["--"] else list(args.worker_command)
    if not command:
        raise FashionGluonError("launch needs a fashion-gluon command after --, e.g. "
                                "-- train --data-root ROOT --category all --out RUN train.kvstore=dist_sync")
    if command[0] == "train":
        _check_distributed_train(command)
    hosts = check_hosts(args.hosts) if args.hosts else None
    launch(fashion_gluon_command(command), args.workers, args.servers, hosts, args.port,
           args.scheduler_host, args.interface, args.timeout)


def cmd_pack(args) -> None:
    from ..data.packing import pack

    summary = pack(args.train or args.data_root, args.category, args.out, args.split, args.val_fraction, args.split_seed,
                   "skip" if args.skip_bad_images else "error", progress=not args.quiet, schema=args.schema)
    print(json.dumps(summary))


def cmd_export(args) -> None:
    from ..inference.export import export_run

    print(json.dumps(export_run(args.checkpoint, args.out, args.format)))


def cmd_quantize(args) -> None:
    from ..inference.quantize import quantize_run
    from ..tools.precision_report import precision_report

    if args.format != "onnx" and (args.placement, args.weight_scale, args.weight_bits) != (
            DEFAULT_PLACEMENT, DEFAULT_WEIGHT_SCALE, None):
        raise FashionGluonError("--placement, --weight-scale and --weight-bits choose the QDQ file of --format onnx")
    record = quantize_run(args.checkpoint, args.out, args.calib_images, args.data_root, args.batch,
                          args.calib_mode, args.format, args.placement, args.weight_scale, args.weight_bits)
    if not args.no_eval:
        record["val"] = precision_report(args.checkpoint, args.out, args.data_root, batch_size=args.batch,
                                         runtime=args.runtime)
    print(json.dumps(record))


def register(sub) -> None:
    """Add ``launch``, ``pack``, ``export`` and ``quantize`` to ``sub`` (the ``add_subparsers``
    object of the ``fashion-gluon`` parser)."""
    p = sub.add_parser("launch", help="distributed training: scheduler, servers and workers (dist_sync)",
                       description="Run a fashion-gluon command (normally train ... train.kvstore=dist_sync) "
                                   "as N workers with M parameter servers, here or over ssh.")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--servers", type=int, default=1)
    p.add_argument("--hosts", metavar="FILE", help="one [user@]host per line: servers and workers go there "
                                                   "round-robin over ssh (default: all on this machine); each "
                                                   "host must answer `ssh HOST true` without a password")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="scheduler port (0: any free port)")
    p.add_argument("--scheduler-host", help="address the nodes reach the scheduler (this machine) at")
    p.add_argument("--interface", help="network interface for ps-lite (default lo on one machine)")
    p.add_argument("--timeout", type=float, help="stop everything after this many seconds")
    p.add_argument("worker_command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="the fashion-gluon command each worker runs, after --")
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser("pack", help="pack a split into an indexed RecordIO file (.rec + .idx) that train --train reads")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data-root", help="data-root folder (its train/ or test/ split)")
    data.add_argument("--train", action="append", metavar="FILE[:IMAGE_DIR]", help="training sources, as for train")
    p.add_argument("--category", required=True, help="a category of the schema, or all")
    p.add_argument("--schema", help="keypoint schema: a shipped name or a YAML/JSON file (default: fashionai)")
    p.add_argument("--out", required=True, help="the .rec file (its .idx is written beside it)")
    p.add_argument("--split", default="train", choices=SPLITS)
    p.add_argument("--val-fraction", type=float, default=0.1, help="as data.val_fraction of the runs")
    p.add_argument("--split-seed", type=int, default=0, help="as data.split_seed of the runs")
    p.add_argument("--skip-bad-images", action="store_true", help="drop unreadable images instead of failing")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("export", help="export a run's best weights as an MXNet symbol or ONNX")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR")
    p.add_argument("--format", default="symbol", choices=FORMATS)
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("quantize", help="INT8 model of a run (CPU), calibrated on training images")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR")
    p.add_argument("--calib-images", type=int, help="training images to calibrate on (e.g. 64)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--data-root", help="default: the run's")
    p.add_argument("--format", default="mxnet", choices=QUANTIZE_FORMATS,
                   help="mxnet: an INT8 symbol run by MXNet (oneDNN); onnx: an INT8 QDQ ONNX file for "
                        "--runtime openvino (fastest) or onnxruntime")
    p.add_argument("--runtime", choices=ONNX_RUNTIMES,
                   help="--format onnx: what runs the INT8 file for the NE report (default: openvino where installed)")
    p.add_argument("--calib-mode", default="naive", choices=CALIB_MODES, help="entropy: --format mxnet only")
    p.add_argument("--placement", default=DEFAULT_PLACEMENT, choices=tuple(PLACEMENTS),
                   help="--format onnx: the layers that get Q/DQ: "
                        + "; ".join(f"{name}: {' + '.join(groups)}" for name, groups in PLACEMENTS.items())
                        + " (docs/performance.md, INT8 placement)")
    p.add_argument("--weight-scale", default=DEFAULT_WEIGHT_SCALE, choices=WEIGHT_SCALES,
                   help="--format onnx: weight scales per output channel or per tensor")
    p.add_argument("--weight-bits", type=int, choices=WEIGHT_BITS,
                   help="--format onnx: 8 on a CPU with VNNI, else 7 (default; 8 saturates vpmaddubsw there)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--no-eval", action="store_true", help="skip the fp32 / bf16 / INT8 validation NE and its loss")
    p.set_defaults(func=cmd_quantize)
