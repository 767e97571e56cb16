"""The ``fashion-gluon`` argument parser, assembled from the command modules."""
from __future__ import annotations

import argparse

from . import predict, run, scale


def build_parser() -> argparse.ArgumentParser:
    """The root parser; every command sets ``func``."""
    parser = argparse.ArgumentParser(
        prog="fashion-gluon",
        description="Clothing keypoint detection (FashionAI 2018) with MXNet/Gluon. "
                    "Run `fashion-gluon COMMAND --help` for a command's options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, predict, scale):
        module.register(sub)
    return parser
