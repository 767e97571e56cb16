"""``fashion-gluon bench train``: interleaved A/B of training steps. The step of one config (default
the demo's recipe) is timed under named variants — precision, the optimizer's multi-precision
update, how the network is hybridized, MXNet's engine, OpenMP's wait policy, the real data
loader, any config override — in rounds that visit every variant in turn, so that a burst of
load on this shared machine hits all of them alike. Each variant's img/s is the median over
the rounds, its ratio the median of its per-round ratios to the first variant measured; with
``profile``, MXNet's profiler gives each variant's time per operator.

Every variant runs in a worker process of its own, built and warmed up once: bf16 AMP patches
MXNet's operators for the rest of a process (:func:`~..engine.trainer.enable_mixed_precision`),
and the engine and OpenMP settings are read when MXNet is imported. The parent asks one worker
at a time for its timed steps, so the ratios still come from one run.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

import mxnet as mx

from ..build import build_codec, build_loss, build_model, build_schema, build_train_dataset
from ..config import load_config
from ..cpu import NO_BF16, cpu_features, cpu_has_bf16, cpu_model
from ..data.synthetic import generate_dataset
from ..engine.schedule import training_schedule
from ..engine.step import train_step
from ..engine.trainer import build_loader, build_trainer, enable_mixed_precision
from ..errors import FashionGluonError
from .train_variants import DEFAULT_VARIANTS, HYBRIDIZE, Variant, parse_variant

#: The demo's recipe (:data:`~.demo.DEMO_RECIPE`), the default config.
DEFAULT_CONFIG = "cpu_fast"
#: Seconds the parent waits between two workers' turns (a ``spin`` worker's OpenMP threads spin a while).
SETTLE_S = 0.3
#: Images per category of the synthetic set the ``loader`` variants read.
LOADER_PER_CATEGORY = 30
REPLY = "BENCH "
#: Measured (CPN-ResNet-18, 64²): a static_alloc graph's ops are counted twice (115 Convolution
#: calls a step for 58 layers, operator time ≈ 2× the step), a dynamic one's once (≈ 95 %).
STATIC_PROFILE = "a static graph: the profiler counts each of its ops twice"


def variant_config(config: "str | None", overrides: Sequence[str], variant: Variant) -> dict:
    """The config a variant trains with: ``config`` (default :data:`DEFAULT_CONFIG`), the
    command's ``overrides``, the variant's own, its precision."""
    loaded = load_config(config or DEFAULT_CONFIG, [*overrides, *variant.overrides])
    loaded["train"]["precision"] = variant.precision
    return loaded


# --------------------------------------------------------------------------- the worker side

def random_batch(config: dict, ctx: Sequence[mx.Context]) -> tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]:
    """(images, targets, weights) of the config's shapes on ``ctx[0]``: random images, zero targets."""
    batch, (h, w) = int(config["train"]["batch_size"]), config["data"]["input_size"]
    codec, keypoints = build_codec(config), build_schema(config).num_keypoints
    return (mx.nd.random.normal(shape=(batch, 3, h, w), ctx=ctx[0]),
            mx.nd.zeros((batch, len(codec.sigma_factors), keypoints) + tuple(codec.heatmap_size), ctx=ctx[0]),
            mx.nd.ones((batch, keypoints), ctx=ctx[0]))


def _loader_batches(config: dict, data_root: str) -> Iterator:
    """Batches of the config's training DataLoader, epoch after epoch."""
    sampler, loader = build_loader(build_train_dataset(config, data_root, "all"), config)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


class Session:
    """A variant's network, loss, trainer and batches in this process, ready to step."""

    def __init__(self, config: dict, variant: Variant, data_root: "str | None", warmup: int):
        self.ctx = [mx.cpu()]
        enable_mixed_precision(variant.precision, self.ctx)  # before the model is built
        self.net = build_model(config, "all", self.ctx)
        for option in variant.options:
            if option in HYBRIDIZE:
                self.net.hybridize(**HYBRIDIZE[option])
        self.loss = build_loss(config)
        optimizer = {"multi_precision": True} if "mp" in variant.options else {}
        schedule = training_schedule(config["train"], 1000)  # any epoch length: the lr does not change a step's time
        self.trainer = build_trainer(self.net, config["train"], schedule, **optimizer)
        if "loader" in variant.options:
            self.batches = _loader_batches(config, data_root)
        else:
            batch = random_batch(config, self.ctx)
            self.batches = iter(lambda: batch, None)
        self.seconds(warmup)

    def seconds(self, steps: int) -> float:
        """Wall time of ``steps`` training steps."""
        start = time.perf_counter()
        for _ in range(steps):
            train_step(self.net, self.loss, self.trainer, next(self.batches), self.ctx)
        mx.nd.waitall()
        return time.perf_counter() - start

    def profile(self, steps: int, folder: str) -> dict:
        """{"seconds": wall time of ``steps`` steps under MXNet's profiler, "operators": {name: ms}}."""
        mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=os.path.join(folder, "profile.json"))
        mx.profiler.set_state("run")
        seconds = self.seconds(steps)
        mx.profiler.set_state("stop")
        table = json.loads(mx.profiler.dumps(reset=True, format="json"))
        return {"seconds": seconds, "operators": {name: row["Total"] for name, row in table["Time"]["operator"].items()}}


def _reply(message: dict) -> None:
    print(REPLY + json.dumps(message), flush=True)


def serve() -> None:
    """A worker's loop: a setup line on stdin, then one request per line (see :class:`Worker`)."""
    setup = json.loads(sys.stdin.readline())
    session = Session(setup["config"], Variant(**setup["variant"]), setup["data_root"], setup["warmup"])
    _reply({"ready": True})
    with tempfile.TemporaryDirectory() as folder:
        for line in sys.stdin:
            request = json.loads(line)
            if "steps" in request:
                _reply({"seconds": session.seconds(request["steps"])})
            else:
                _reply(session.profile(request["profile"], folder))


# --------------------------------------------------------------------------- the parent side

class Worker:
    """A variant's worker process; :meth:`ask` sends a request and returns its reply."""

    def __init__(self, variant: Variant, config: dict, data_root: "str | None", warmup: int, log: Path,
                 profile: bool = False):
        self.variant, self.log = variant, log
        setup = {"config": config, "variant": variant.__dict__, "data_root": data_root, "warmup": warmup}
        with open(log, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from fashion_gluon.tools.bench_train import serve; serve()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=variant.env(profile))
        self._send(setup)

    def _send(self, message: dict) -> None:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def reply(self) -> dict:
        """The worker's next reply; its last error line if it ended instead."""
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        lines = [line for line in self.log.read_text().splitlines() if line.strip()]
        raise FashionGluonError(f"variant {self.variant.name}: the worker ended: {lines[-1] if lines else 'no message'}")

    def ask(self, request: dict) -> dict:
        self._send(request)
        return self.reply()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def _run_workers(runnable: list, configs: list, data_root: "str | None", rounds: int, steps: int, warmup: int,
                 profile: bool, folder: Path) -> tuple[dict, dict]:
    """({index: [seconds per round]}, {index: profile}) of the runnable variants' workers."""
    workers = {}
    try:
        for index in runnable:  # started together; every one built and warm before the first round
            workers[index] = Worker(configs[index][0], configs[index][1], data_root, warmup, folder / f"{index}.log",
                                    profile)
        for worker in workers.values():
            worker.reply()
        times: dict = {index: [] for index in workers}
        for _ in range(rounds):
            for index, worker in workers.items():
                time.sleep(SETTLE_S)
                times[index].append(worker.ask({"steps": steps})["seconds"])
        profiles = {}
        if profile:
            for index, worker in workers.items():
                time.sleep(SETTLE_S)
                profiles[index] = worker.ask({"profile": steps})
        return times, profiles
    finally:
        for worker in workers.values():
            worker.close()


def variant_figures(rates: Sequence[float], base: Sequence[float]) -> dict:
    """A variant's img/s (median over the rounds, and the range) and its ratio to the ``base``
    variant's: the median (and range) of the per-round ratios, as a round's load hits both alike."""
    ratios = [rate / first for rate, first in zip(rates, base)]
    return {"img_per_s": statistics.median(rates), "img_per_s_range": [min(rates), max(rates)],
            "ratio": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)],
            "rounds_img_per_s": list(rates)}


def bench_train(config: "str | None" = None, overrides: Sequence[str] = (), variants: Sequence[str] = DEFAULT_VARIANTS,
                batch: "int | None" = None, size: "int | None" = None, rounds: int = 5, steps: int = 3,
                warmup: int = 3, profile: bool = False, data_root: "str | None" = None) -> dict:
    """Training img/s of each of ``variants`` (names, see :func:`parse_variant`) of ``config``
    with ``overrides`` (``batch``, ``size``: the batch size, a square input side), over
    ``rounds`` interleaved rounds of ``steps`` steps after ``warmup``; with ``profile``, each
    variant's operator times over ``steps`` more steps. A bf16 variant on a CPU without native
    bf16 is skipped (its row says why). ``data_root``: the images ``loader`` variants read."""
    parsed = [parse_variant(name) for name in variants]
    sizes = ([f"train.batch_size={batch}"] if batch else []) + ([f"data.input_size=[{size},{size}]"] if size else [])
    configs = [(variant, variant_config(config, [*overrides, *sizes], variant)) for variant in parsed]
    rows: list[dict] = [{"name": variant.name} for variant in parsed]
    for row, (variant, _) in zip(rows, configs):
        if variant.precision == "bf16" and not cpu_has_bf16():
            row["skipped"] = NO_BF16.split(";")[0]
    runnable = [index for index, row in enumerate(rows) if "skipped" not in row]
    first = configs[runnable[0]][1] if runnable else configs[0][1]
    result = {"config": config or DEFAULT_CONFIG, "model": first["model"]["name"], "batch": first["train"]["batch_size"],
              "input_size": list(first["data"]["input_size"]), "rounds": rounds, "steps": steps,
              "cpu": {"model": cpu_model(), "features": cpu_features()},
              "threads": parsed[0].env()["OMP_NUM_THREADS"], "profiled": profile, "variants": rows}
    if not runnable:
        return result
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if data_root is None and any("loader" in configs[i][0].options for i in runnable):
            data_root = str(folder / "synth")
            generate_dataset(data_root, per_category=LOADER_PER_CATEGORY, seed=0, progress=False)
        times, profiles = _run_workers(runnable, configs, data_root, rounds, steps, warmup, profile, folder)
    rates = {index: [configs[index][1]["train"]["batch_size"] * steps / seconds for seconds in times[index]]
             for index in runnable}
    for index in runnable:
        rows[index].update(variant_figures(rates[index], rates[runnable[0]]))
        if index in profiles:
            rows[index]["profile"] = {"ms_per_step": 1000 * profiles[index]["seconds"] / steps,
                                      "operators_ms_per_step": {name: ms / steps for name, ms in
                                                                profiles[index]["operators"].items()}}
    return result


def format_train(result: dict, top: int = 12) -> str:
    """A plain-text table of :func:`bench_train`'s figures: one line per variant, then (if
    profiled) each variant's ``top`` operators with their share of all operator time."""
    lines = [f"{result['model']} ({result['config']}), batch {result['batch']}, "
             f"{'x'.join(map(str, result['input_size']))}, {result['rounds']} rounds x {result['steps']} steps; "
             f"{result['cpu']['model']} ({', '.join(result['cpu']['features']) or 'no listed features'}), "
             f"OMP_NUM_THREADS={result['threads']}"
             + ("; profiled: every variant unbulked (MXNET_EXEC_BULK_EXEC_TRAIN=0)" if result["profiled"] else "")]
    width = max(len(row["name"]) for row in result["variants"])
    for row in result["variants"]:
        if "skipped" in row:
            lines.append(f"{row['name']:{width}s}  skipped: {row['skipped']}")
            continue
        low, high = row["img_per_s_range"]
        lines.append(f"{row['name']:{width}s}  {row['img_per_s']:7.2f} img/s ({low:.2f}-{high:.2f})  ratio "
                     f"{row['ratio']:.2f} ({row['ratio_range'][0]:.2f}-{row['ratio_range'][1]:.2f})")
    for row in result["variants"]:
        if "profile" in row:
            operators = row["profile"]["operators_ms_per_step"]
            total = sum(operators.values())
            twice = "" if "dynamic" in parse_variant(row["name"]).options else f"; {STATIC_PROFILE}"
            lines.append(f"profile {row['name']}: {row['profile']['ms_per_step']:.0f} ms/step, operators "
                         f"{total:.0f} ms ({100 * total / row['profile']['ms_per_step']:.0f} % of the step{twice})")
            for name, ms in sorted(operators.items(), key=lambda item: -item[1])[:top]:
                lines.append(f"  {name:40s} {ms:8.1f} ms  {100 * ms / total:5.1f} %")
    return "\n".join(lines)


__all__ = ["DEFAULT_CONFIG", "bench_train", "format_train", "random_batch", "serve", "variant_figures"]
