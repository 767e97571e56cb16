"""Distributed training on MXNet's parameter server: the launcher, data sharding, the
2-workers-equal-one-process check, the time-budget vote, failures that must not hang.

Run as a script (``python test_distributed.py MODE OUT``) this file is the worker program
that the launcher starts."""
import argparse
import json
import shlex
import socket
import stat
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from fashion_gluon.cli.scale import register
from fashion_gluon.data.dataset import EpochSampler
from fashion_gluon.data.synthetic import generate_dataset
from fashion_gluon.engine.distributed import (
    LaunchError,
    Node,
    check_port,
    cluster_env,
    exit_on_failure,
    fashion_gluon_command,
    launch,
    parse_hosts,
    plan_nodes,
    ssh_command,
)
from fashion_gluon.engine.schedule import training_schedule
from fashion_gluon.engine.train import run_epoch
from fashion_gluon.engine.trainer import TimeBudget, build_trainer, scale_for_workers
from fashion_gluon.errors import FashionGluonError

SAMPLES, BATCH, EPOCHS, LR, WARMUP_LR, SEED = 24, 4, 2, 0.05, 0.01, 3
TCFG = {"optimizer": "sgd", "momentum": 0.9, "wd": 1e-4, "clip_gradient": None, "lr": LR, "warmup_lr": WARMUP_LR,
        "warmup_steps": 2, "epochs": EPOCHS, "lr_schedule": "cosine", "lr_steps": [], "lr_factors": []}
TINY = ["model.name=cpn_resnet18", "model.kwargs.channels=16", "data.input_size=[64,64]", "train.batch_size=2",
        "train.epochs=2", "train.optimizer=adam", "train.lr=1e-3", "train.warmup_steps=2", "train.lr_schedule=cosine",
        "data.num_workers=0", "loss.fg_weight=10", "train.kvstore=dist_sync"]


# ----------------------------------------------------------------------------- the tiny training job


def _tiny_net():
    """A small MLP with the same initial weights in every process."""
    mx.random.seed(0)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(8, activation="tanh", in_units=6), gluon.nn.Dense(3, in_units=8))
    net.initialize(mx.init.Xavier())
    return net


def _weights(net) -> list:
    return [p.data().asnumpy() for p in net.collect_params().values()]


class SameSamples(gluon.data.Sampler):
    """The single-process order whose s-th batch of N·b keys is the s-th batches of b keys of
    the N workers' EpochSampler shards together: the samples the workers see at step s."""

    def __init__(self, num_parts: int, batch: int):
        self.parts = [EpochSampler(SAMPLES, True, SEED, r, num_parts) for r in range(num_parts)]
        self.batch = batch

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    def __iter__(self):
        shards, b = [list(part) for part in self.parts], self.batch
        return iter([key for s in range(len(shards[0]) // b) for shard in shards for key in shard[s * b:(s + 1) * b]])

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)


def _tiny_job(out_dir: Path, kvstore, batch: int, tcfg: dict, sampler, num_parts: int):
    """Train a small MLP (no BatchNorm, so the batch split cannot matter) with the engine's own
    trainer, lr scaling and epoch loop over ``sampler``'s keys; returns (net, loader, trainer, loss)."""

    class Rows(gluon.data.Dataset):
        def __init__(self):
            rng = np.random.default_rng(7)
            self.x = rng.normal(size=(SAMPLES, 6)).astype(np.float32)
            self.y = rng.normal(size=(SAMPLES, 3)).astype(np.float32)
            self.w = rng.uniform(0.5, 1.5, size=(SAMPLES, 3)).astype(np.float32)

        def __len__(self):
            return SAMPLES

        def __getitem__(self, key):
            _, row = key
            return self.x[row], self.y[row], self.w[row]

    class WeightedMSE(gluon.HybridBlock):
        def hybrid_forward(self, F, pred, target, weight):
            return F.mean(F.square(pred - target) * weight)

    net = _tiny_net()
    loader = gluon.data.DataLoader(Rows(), batch_sampler=gluon.data.BatchSampler(sampler, batch, "discard"))
    trainer = build_trainer(net, tcfg, training_schedule(scale_for_workers(tcfg, num_parts), len(loader)), kvstore)
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        run_epoch(net, loader, WeightedMSE(), trainer, [mx.cpu()], epoch, "", out_dir, progress=False,
                  num_parts=num_parts)
    return net, loader, trainer, WeightedMSE()


def _worker_train(out_dir: Path) -> None:
    """Worker: train on this worker's shard; save the weights; then run one epoch under a
    time budget that only the rank-1 worker has exhausted and record the steps taken."""
    kv = mx.kv.create("dist_sync")
    with exit_on_failure():
        shard = EpochSampler(SAMPLES, True, SEED, kv.rank, kv.num_workers)
        net, loader, trainer, loss = _tiny_job(out_dir, kv, BATCH, TCFG, shard, kv.num_workers)
        net.save_parameters(str(out_dir / f"rank{kv.rank}.params"))
        budget = TimeBudget(1e6, spent=2e6 if kv.rank == 1 else 0.0, kvstore=kv)  # rank 1 is out of time
        stats = run_epoch(net, loader, loss, trainer, [mx.cpu()], EPOCHS, "", out_dir, progress=False,
                          out_of_time=budget, num_parts=kv.num_workers)
        (out_dir / f"rank{kv.rank}.json").write_text(json.dumps(stats))
        mx.nd.waitall()  # deliver the last gradients before exiting (see engine.train.fit)


def _worker_fail(out_dir: Path) -> None:
    """Worker: after one exchange the rank-1 worker raises; rank 0 waits for a second exchange
    that never comes (without the launcher it would hang forever)."""
    kv = mx.kv.create("dist_sync")
    with exit_on_failure():
        value = mx.nd.ones(3)
        kv.init(0, value)
        kv.pushpull(0, value, out=value)
        if kv.rank == 1:
            raise RuntimeError("worker failure injected by the test")
        kv.pushpull(0, value, out=value)
        value.wait_to_read()


def _worker_hello(out_dir: Path) -> None:
    """Worker: report the cluster size seen through the kvstore."""
    kv = mx.kv.create("dist_sync")
    with exit_on_failure():
        value = mx.nd.ones(1)
        kv.init(0, value)
        kv.pushpull(0, value, out=value)
        (out_dir / f"hello{kv.rank}.json").write_text(json.dumps({"workers": kv.num_workers,
                                                                  "sum": float(value.asscalar())}))


def _worker(mode: str, out_dir: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), mode, str(out_dir)]


# ----------------------------------------------------------------------------- planning and helpers


def test_plan_nodes_round_robin_over_hosts():
    nodes = plan_nodes(3, 2, ["a", "user@b"])
    assert nodes == [Node("scheduler", 0), Node("server", 0, "a"), Node("server", 1, "user@b"),
                     Node("worker", 0, "a"), Node("worker", 1, "user@b"), Node("worker", 2, "a")]
    assert [n.host for n in plan_nodes(2, 1)] == [None, None, None, None]
    assert nodes[4].name == "worker 1 on user@b"
    with pytest.raises(LaunchError, match="at least one worker and one server, got 0 and 1"):
        plan_nodes(0, 1)


def test_parse_hosts(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("# cluster\nnode1\n\n  alice@node2   # second\n")
    assert parse_hosts(path) == ["node1", "alice@node2"]
    path.write_text("# nothing\n\n")
    with pytest.raises(LaunchError, match="lists no hosts"):
        parse_hosts(path)
    path.write_text("node1 node2\n")
    with pytest.raises(LaunchError, match="one host per line, got 'node1 node2'"):
        parse_hosts(path)
    with pytest.raises(LaunchError, match="cannot read hosts file .*missing"):
        parse_hosts(tmp_path / "missing")


def test_cluster_env_and_ssh_command_round_trip():
    env = cluster_env(Node("worker", 1, "h"), 4, 2, "10.0.0.5", 9100, None)
    assert env == {"DMLC_ROLE": "worker", "DMLC_PS_ROOT_URI": "10.0.0.5", "DMLC_PS_ROOT_PORT": "9100",
                   "DMLC_NUM_SERVER": "2", "DMLC_NUM_WORKER": "4"}
    local = cluster_env(Node("server", 0), 2, 1, "127.0.0.1", 9100, "lo")
    assert local["DMLC_INTERFACE"] == "lo" and local["DMLC_NODE_HOST"] == "127.0.0.1"
    argv = ["/opt/py env/python", "-m", "fashion_gluon.cli", "train", "model.kwargs.name=it's"]
    command = ssh_command("bob@h", argv, env, "/work dir", ssh="ssh -p 2222")
    assert command[:5] == ["ssh", "-p", "2222", "-o", "BatchMode=yes"] and command[5] == "bob@h"
    cd, rest = command[6].split(" && ", 1)
    assert shlex.split(cd) == ["cd", "/work dir"]
    assert shlex.split(rest) == ["exec", "env", *[f"{k}={v}" for k, v in env.items()], *argv]


def test_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LaunchError, match=rf"port {port} on 127.0.0.1 is already in use .*--port \d+"):
            check_port("127.0.0.1", port)
        with pytest.raises(LaunchError, match=rf"port {port} .* in use"):
            launch([sys.executable, "-c", "pass"], 2, 1, port=port)


# ----------------------------------------------------------------------------- launched clusters


def test_two_workers_equal_one_process_with_the_double_batch(tmp_path):
    """2 workers × batch b, lr scaled ×2 by the engine, give the weights of one process with
    batch 2b and lr ×2 on the same samples (:class:`SameSamples`); the time-budget vote stops
    both workers together."""
    launch(_worker("train", tmp_path), workers=2, servers=1, port=0, timeout=120, grace=5)
    single_cfg = dict(TCFG, lr=2 * LR, warmup_lr=2 * WARMUP_LR)
    single = _weights(_tiny_job(tmp_path, "device", 2 * BATCH, single_cfg, SameSamples(2, BATCH), 1)[0])
    for rank in (0, 1):
        net = _tiny_net()
        net.load_parameters(str(tmp_path / f"rank{rank}.params"))
        dist = _weights(net)
        difference = max(np.abs(d - s).max() for d, s in zip(dist, single))
        print(f"rank {rank}: max |distributed - single| = {difference:.3g}")
        assert difference <= 1e-4
    moved = max(np.abs(s - i).max() for s, i in zip(single, _weights(_tiny_net())))
    assert moved > 1e-2, "training changed the weights, so the comparison means something"
    steps = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [s["steps"] for s in steps] == [1, 1] and all(s["out_of_time"] for s in steps)


def test_a_failing_worker_stops_everything_quickly(tmp_path):
    tic = time.monotonic()
    with pytest.raises(LaunchError) as caught:
        launch(_worker("fail", tmp_path), workers=2, servers=1, port=0, timeout=90, grace=3)
    message = str(caught.value)
    assert "exited with status 1; stopped the 3 other processes" in message
    assert "RuntimeError: worker failure injected by the test" in message
    assert time.monotonic() - tic < 45


def test_timeout_stops_all_processes(tmp_path):
    marker = tmp_path / "started"
    sleeper = [sys.executable, "-c", f"open({str(marker)!r}, 'a').close(); import time; time.sleep(600)"]
    tic = time.monotonic()
    with pytest.raises(LaunchError, match=r"timed out after 3 s; stopped all 4 processes"):
        launch(sleeper, workers=2, servers=1, port=0, timeout=3, grace=2)
    assert marker.exists() and time.monotonic() - tic < 20


def test_hosts_go_through_ssh(tmp_path):
    """A stand-in ``ssh`` that logs the host and runs the remote command here."""
    log = tmp_path / "ssh.log"
    fake = tmp_path / "fake-ssh"
    fake.write_text(f"#!/bin/sh\nwhile [ \"$1\" = -o ]; do shift 2; done\necho \"$1\" >> {shlex.quote(str(log))}\n"
                    "shift\nexec sh -c \"$1\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    launch(_worker("hello", tmp_path), workers=2, servers=1, hosts=["alpha", "beta"], port=0,
           scheduler_host="127.0.0.1", interface="lo", ssh=str(fake), timeout=90, grace=5)
    assert sorted(log.read_text().split()) == ["alpha", "alpha", "beta"]  # server 0, workers 0 and 1
    for rank in (0, 1):
        assert json.loads((tmp_path / f"hello{rank}.json").read_text()) == {"workers": 2, "sum": 2.0}


def test_launch_train_end_to_end_only_worker_zero_writes(tmp_path):
    root, run = tmp_path / "synth", tmp_path / "run"
    generate_dataset(root, per_category=6, seed=0, image_size=(128, 128), progress=False)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    train = ["train", "--data-root", str(root), "--category", "all", "--out", str(run), *TINY]
    with pytest.raises(FashionGluonError, match="train.kvstore is 'device'.*train.kvstore=dist_sync"):
        args = parser.parse_args(["launch", "--", *train[:-1]])
        args.func(args)
    args = parser.parse_args(["launch", "--workers", "2", "--servers", "1", "--port", "0", "--timeout", "240", "--",
                              *train])
    args.func(args)
    sources, *records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2], "one writer: one sources line, then one log line per epoch"
    assert "sources" in sources
    assert "val_ne" in records[-1]
    assert len(list((run / "tb").iterdir())) == 1, "one tensorboard writer"
    assert json.loads((run / "last.json").read_text())["epoch"] == 2
    assert sorted(p.name for p in run.iterdir()) == ["best.json", "best.params", "config.yaml", "curves.png",
                                                     "epoch-0002.params", "epoch-0002.states", "last.json",
                                                     "log.jsonl", "schema.yaml", "tb"]


def test_fashion_gluon_command():
    assert fashion_gluon_command(["train", "--out", "x"], "/py") == ["/py", "-m", "fashion_gluon.cli", "train",
                                                                     "--out", "x"]


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    {"train": _worker_train, "fail": _worker_fail, "hello": _worker_hello}[mode](out)
