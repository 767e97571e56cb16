"""Training engine: exact resume, divergence handling, SWA, BN recalibration, transfer, bad input,
what training imports."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from _fashionai import FASHIONAI, category_indices
from _tiny import TINY
from mxnet import gluon

from fashion_gluon.config import load_config
from fashion_gluon.engine import train as train_module
from fashion_gluon.engine.step import train_step
from fashion_gluon.engine.swa import WeightAverage, recalibrate_batchnorm, run_swa
from fashion_gluon.engine.train import TrainingDiverged, fit
from fashion_gluon.engine.transfer import load_matching
from fashion_gluon.errors import DataError, FashionGluonError
from fashion_gluon.models import get_model
from fashion_gluon.runs import load_state, run_config


def _squared_error(out, target, weight):
    return ((out - target) ** 2 * weight).mean()


# target 2: loss (0.5 - 2)² = 2.25, gradient 2 (0.5 - 2) = -3, weight 0.5 + 0.25 * 3 = 1.25;
# target NaN: the loss is returned and the weight left alone
@pytest.mark.parametrize("target, loss, weight", [(2.0, 2.25, 1.25), (float("nan"), float("nan"), 0.5)])
def test_train_step_returns_the_loss_and_updates_only_on_a_finite_one(target, loss, weight):
    net = gluon.nn.Dense(1, in_units=1, use_bias=False)
    net.initialize(mx.init.Constant(0.5))
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.25})
    batch = (mx.nd.ones((2, 1)), mx.nd.full((2, 1), target), mx.nd.ones((2, 1)))
    value = train_step(net, _squared_error, trainer, batch, [mx.cpu()])
    assert value == pytest.approx(loss, nan_ok=True) and net.weight.data().asscalar() == weight


#: Modules of the deployment stack that training must not load.
DEPLOYMENT_MODULES = ("onnxruntime", "openvino", "fashion_gluon.inference.quantize", "fashion_gluon.inference.qdq")
#: Loaded by ``import mxnet`` itself (mxnet.contrib imports its quantization; mxnet.onnx imports
#: onnx where installed), so training may add them only by importing MXNet.
MXNET_LOADS = ("onnx", "mxnet.contrib.quantization")


def test_training_imports_no_onnx_openvino_or_int8_stack():
    script = ("import sys, mxnet\n"
              "with_mxnet = set(sys.modules)\n"
              "import fashion_gluon.engine.train, fashion_gluon.engine.swa\n"
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DEPLOYMENT_MODULES[:2]}"
              f" or m.startswith({DEPLOYMENT_MODULES[2:]})"
              f" or (m.startswith({MXNET_LOADS}) and m not in with_mxnet)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def params_of(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def test_run_directory_contents(tiny_run, tiny_data):
    state = load_state(tiny_run)
    assert state["epoch"] == 2 and state["category"] == "all"
    for name in ("config.yaml", "best.params", "best.json", "log.jsonl", "curves.png", state["params"], state["states"]):
        assert (tiny_run / name).stat().st_size > 0, name
    assert not (tiny_run / "epoch-0001.params").exists(), "older epochs are removed once the next is safe"
    sources, *records = [json.loads(line) for line in (tiny_run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert [s["file"] for s in sources["sources"]] == [str((tiny_data / "train/Annotations/train.csv").resolve())]
    assert {"loss", "lr", "img_per_s", "val_ne", "val_per_category", "val_per_keypoint"} <= set(records[-1])
    assert all(0 < r["step_seconds"] < r["seconds"] and r["checkpoint_seconds"] > 0 for r in records)
    assert "val_seconds" in records[-1] and records[-1]["val_seconds"] > 0
    assert list((tiny_run / "tb").iterdir()), "tensorboard events written"


def test_resume_gives_identical_parameters(tiny_data, tiny_run, tmp_path):
    out = tmp_path / "resumed"
    fit(tiny_data, "all", out, load_config(overrides=TINY), progress=False, max_epochs=1)
    assert load_state(out)["epoch"] == 1
    fit(tiny_data, "all", out, resume=True, progress=False)
    assert load_state(out)["epoch"] == 2
    straight, resumed = params_of(tiny_run / "epoch-0002.params"), params_of(out / "epoch-0002.params")
    assert straight.keys() == resumed.keys()
    for name in straight:
        np.testing.assert_array_equal(straight[name], resumed[name], err_msg=name)


def test_divergence_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "diverged"
    fit(tiny_data, "all", out, load_config(overrides=TINY), progress=False, max_epochs=1)
    before = (out / "last.json").read_text()
    saved = params_of(out / "epoch-0001.params")
    real_build_loss = train_module.build_loss

    def exploding_loss(config):  # the third step of the resumed epoch produces NaN
        loss, calls = real_build_loss(config), []

        def call(*args):
            calls.append(1)
            return loss(*args) * (float("nan") if len(calls) == 3 else 1.0)
        return call

    monkeypatch.setattr(train_module, "build_loss", exploding_loss)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 3; .*last good checkpoint"):
        fit(tiny_data, "all", out, resume=True, progress=False)
    assert (out / "last.json").read_text() == before
    for name, value in params_of(out / "epoch-0001.params").items():
        np.testing.assert_array_equal(value, saved[name])


def test_real_divergence_is_caught(tiny_data, tmp_path):
    bad = load_config(overrides=TINY + ["train.optimizer=sgd", "train.lr=1e30", "train.warmup_steps=0"])
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at epoch 1, step \d+"):
        fit(tiny_data, "all", tmp_path / "run", bad, progress=False)
    assert not (tmp_path / "run" / "last.json").exists()


def test_resume_with_other_model_is_refused(tiny_data, tiny_run):
    other = load_config(overrides=TINY + ["model.kwargs.channels=64"])
    with pytest.raises(FashionGluonError, match=r"cannot resume .*model\.kwargs"):
        fit(tiny_data, "all", tiny_run, other, resume=True, progress=False)


def test_init_from_maps_all_category_head_to_skirt(tiny_run):
    net = get_model("cpn_resnet18", len(category_indices("skirt")), channels=32)
    mapped = load_matching(net, tiny_run, "skirt", FASHIONAI)
    net(mx.nd.zeros((1, 3, 64, 64)))  # finish deferred shape inference
    source = params_of(tiny_run / "best.params")
    skirt, selected = list(category_indices("skirt")), []
    for name, param in net._collect_params_with_prefix().items():
        value = param.data().asnumpy()
        if value.shape == source[name].shape:
            np.testing.assert_array_equal(value, source[name])
        else:
            axis = next(a for a, (x, y) in enumerate(zip(source[name].shape, value.shape)) if x != y)
            np.testing.assert_array_equal(value, np.take(source[name], skirt, axis=axis))
            selected.append(name)
    # the keypoint convolutions (weight and bias) of the 4 GlobalNet levels and the RefineNet
    assert mapped == len(selected) == 10, (mapped, selected)


def test_weight_average_is_the_mean():
    net = gluon.nn.Dense(3, in_units=2)
    net.initialize()
    average, snapshots = WeightAverage(net), []
    for scale in (1.0, 2.0, 4.0):
        for p in net.collect_params().values():
            p.set_data(mx.nd.ones(p.shape) * scale + mx.nd.array(np.arange(np.prod(p.shape)).reshape(p.shape)))
        snapshots.append({k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()})
        average.add()
    average.apply()
    for name, param in net._collect_params_with_prefix().items():
        np.testing.assert_allclose(param.data().asnumpy(), np.mean([s[name] for s in snapshots], axis=0), rtol=1e-6)


def test_batchnorm_recalibration_matches_direct_statistics():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(4, 3, in_channels=3), gluon.nn.BatchNorm(in_channels=4))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    rng = np.random.default_rng(0)
    batches = [(mx.nd.array(rng.normal(i, 1 + i, (5, 3, 8, 8))),) for i in range(3)]
    conv = net[0]
    means = [conv(b[0]).asnumpy().mean(axis=(0, 2, 3)) for b in batches]
    variances = [conv(b[0]).asnumpy().var(axis=(0, 2, 3)) for b in batches]
    assert recalibrate_batchnorm(net, batches, [mx.cpu()]) == 3
    bn = net[1]
    np.testing.assert_allclose(bn.running_mean.data().asnumpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_var.data().asnumpy(), np.mean(variances, axis=0), rtol=1e-3, atol=1e-5)
    assert bn._kwargs["momentum"] == 0.9, "momentum restored"


def test_swa_writes_a_checkpoint_and_reports_ne(tiny_run, tiny_data, tmp_path, monkeypatch):
    added = []
    original_add = WeightAverage.add

    def recording_add(self):
        added.append({k: p.data().asnumpy().copy() for k, p in self.params.items()})
        original_add(self)

    monkeypatch.setattr(WeightAverage, "add", recording_add)
    applied = {}
    original_apply = WeightAverage.apply

    def recording_apply(self):
        original_apply(self)
        applied.update({k: p.data().asnumpy().copy() for k, p in self.params.items()})

    monkeypatch.setattr(WeightAverage, "apply", recording_apply)
    result = run_swa(tiny_run, tiny_data, tmp_path / "swa", cycles=2, cycle_epochs=1, lr_max=1e-4, lr_min=0.0,
                     bn_images=5, progress=False)  # batch 4: BN statistics from 2 whole batches
    assert len(added) == 2
    for name, value in applied.items():
        np.testing.assert_allclose(value, (added[0][name] + added[1][name]) / 2, rtol=1e-5, atol=1e-7)
    assert {"val_ne_before", "val_ne_averaged", "val_ne_after"} <= set(result)
    swa_config = run_config(tmp_path / "swa")["swa"]
    assert result["bn_batches"] == 2 and swa_config["bn_images"] == 5
    assert swa_config["lr_min"] == 0.0, "an explicit 0 is used, not replaced by the config's value"
    assert load_state(tmp_path / "swa")["epoch"] == 4
    assert (tmp_path / "swa" / "best.params").exists()


def test_missing_layout_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"missing .*train"):
        fit(tmp_path, "all", tmp_path / "out", load_config(overrides=TINY), progress=False)


def test_category_without_rows(tiny_data, tmp_path):
    lines = (tiny_data / "train" / "Annotations" / "train.csv").read_text().splitlines()
    root = tmp_path / "noskirt"
    (root / "train" / "Annotations").mkdir(parents=True)
    os.symlink(tiny_data / "train" / "Images", root / "train" / "Images")
    (root / "train" / "Annotations" / "train.csv").write_text(
        "\n".join([lines[0]] + [line for line in lines[1:] if ",skirt," not in line]) + "\n")
    with pytest.raises(DataError, match="no train rows of category 'skirt'"):
        fit(root, "skirt", tmp_path / "out", load_config(overrides=TINY), progress=False)


def test_existing_run_is_not_overwritten_without_resume(tiny_data, tiny_run):
    before = (tiny_run / "last.json").read_text()
    with pytest.raises(FashionGluonError, match=r"already holds a run; resume it"):
        fit(tiny_data, "all", tiny_run, load_config(overrides=TINY), progress=False)
    assert (tiny_run / "last.json").read_text() == before


def test_unwritable_out_dir_fails_before_training(tiny_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FashionGluonError, match="is not writable"):
        fit(tiny_data, "all", blocker / "run", load_config(overrides=TINY), progress=False)


def test_time_budget_ends_training_annealed_and_resume_spends_only_the_rest(tiny_data, tmp_path):
    config = load_config(overrides=TINY + ["train.epochs=1000", "train.time_budget_s=6", "train.lr_schedule=cosine",
                                           "train.warmup_steps=0", "train.val_every=1000"])
    out = tmp_path / "run"
    record = fit(tiny_data, "all", out, config, progress=False)
    state = load_state(out)
    assert 1 <= record["epoch"] < 1000 and "val_ne" in record  # stopped by the budget, validated at the stop
    assert record["lr"] < 0.1 * config["train"]["lr"]  # the cosine is (nearly) at its end
    assert 6.0 <= state["train_seconds"] < 6.0 + 30
    again = fit(tiny_data, None, out, resume=True, progress=False)  # budget already used up
    assert again["epoch"] == record["epoch"] + 1  # one epoch of at most one step, then it stops
