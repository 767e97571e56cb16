"""Each choice has one table, owned by the module that implements it; the config checks, the
consumers and the CLI's ``choices`` read that table, and an unknown value is one line naming the
key and the allowed values."""
from __future__ import annotations

import argparse

import pytest

from fashion_gluon.cli.parser import build_parser
from fashion_gluon.codec import DECODERS, HeatmapCodec
from fashion_gluon.config import load_config
from fashion_gluon.data.layout import KEYPOINT_FORMATS
from fashion_gluon.data.sources import HELD_OUT_SPLITS, SPLITS
from fashion_gluon.engine.schedule import SCHEDULES, BudgetSchedule, training_schedule
from fashion_gluon.engine.trainer import KVSTORES, OPTIMIZERS, PRECISIONS, check_train_choices, resolve_precision
from fashion_gluon.errors import ConfigError
from fashion_gluon.inference import qdq, runtimes
from fashion_gluon.inference.formats import CALIB_MODES, FORMATS, QUANTIZE_FORMATS

TRAIN_TABLES = {"train.optimizer": OPTIMIZERS, "train.lr_schedule": SCHEDULES, "train.precision": PRECISIONS,
                "train.kvstore": KVSTORES}


def test_the_tables():
    assert DECODERS == ("dark", "quarter")
    assert tuple(OPTIMIZERS) == ("sgd", "adam") and OPTIMIZERS["sgd"] == ("momentum",)
    assert SCHEDULES == ("step", "cosine")
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    assert KVSTORES == ("device", "local", "dist_sync", "dist_device_sync", "dist_async")
    assert runtimes.RUNTIMES == {"mxnet": ("fp32", "bf16"), "onnxruntime": ("fp32", "int8"),
                                 "openvino": ("fp32", "bf16", "int8")}
    assert runtimes.ONNX_RUNTIMES == ("onnxruntime", "openvino")
    assert runtimes.RUNTIME_CHOICES == ("auto", "mxnet", "onnxruntime", "openvino")
    assert runtimes.PRECISIONS == ("fp32", "bf16", "int8")
    assert CALIB_MODES == ("naive", "entropy")
    assert SPLITS == ("train", "val", "test") and HELD_OUT_SPLITS == ("val", "test")
    assert KEYPOINT_FORMATS == ("csv", "coco")


@pytest.mark.parametrize("key", sorted(TRAIN_TABLES))
def test_training_accepts_exactly_its_tables(key):
    for value in TRAIN_TABLES[key]:
        config = load_config(overrides=[f"{key}={value}"])
        check_train_choices(config)
        assert config["train"][key.split(".")[1]] == value
    config = load_config(overrides=[f"{key}=nope"])  # the config module leaves these keys to training
    with pytest.raises(ConfigError) as error:
        check_train_choices(config)
    assert str(error.value) == f"config: {key} must be one of {', '.join(TRAIN_TABLES[key])}, got 'nope'"


def test_the_config_accepts_exactly_the_codec_decoders():
    for decoder in DECODERS:
        assert load_config(overrides=[f"codec.decode={decoder}"])["codec"]["decode"] == decoder
        assert HeatmapCodec((64, 64), decode=decoder).decoding == decoder
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["codec.decode=argmax"])
    assert str(error.value) == "config: codec.decode must be one of dark, quarter, got 'argmax'"


def test_fit_refuses_a_choice_before_it_reads_data_or_writes_the_run(tmp_path):
    from fashion_gluon.engine.train import fit

    config = load_config(overrides=["train.optimizer=adamw"])
    with pytest.raises(ConfigError, match=r"^config: train.optimizer must be one of sgd, adam, got 'adamw'$"):
        fit(tmp_path / "no data", "skirt", tmp_path / "run", config, progress=False)
    assert not (tmp_path / "run").exists()


def test_the_consumers_read_the_same_tables():
    import mxnet as mx
    from mxnet import gluon

    from fashion_gluon.config import DEFAULTS
    from fashion_gluon.engine.trainer import build_trainer

    train = dict(DEFAULTS["train"], epochs=1)
    for schedule in SCHEDULES:
        training_schedule(dict(train, lr_schedule=schedule), 4)
        BudgetSchedule(dict(train, lr_schedule=schedule), budget=type("Budget", (), {"progress": 0.0})())
    with pytest.raises(ConfigError, match=r"^config: train.lr_schedule must be one of step, cosine, got 'poly'$"):
        BudgetSchedule(dict(train, lr_schedule="poly"), budget=None)
    for precision in PRECISIONS[:3]:  # fp16 resolves only on a GPU context
        assert resolve_precision(precision, [mx.cpu()]) in PRECISIONS[1:]
    net = gluon.nn.Dense(1, in_units=1)
    net.initialize()
    for optimizer, keys in OPTIMIZERS.items():
        trainer = build_trainer(net, dict(train, optimizer=optimizer), training_schedule(train, 4))
        assert type(trainer._optimizer).__name__.lower() == optimizer
        assert all(getattr(trainer._optimizer, key) == float(train[key]) for key in keys)
    with pytest.raises(ConfigError, match=r"^config: train.optimizer must be one of sgd, adam, got 'adamw'$"):
        build_trainer(net, dict(train, optimizer="adamw"), training_schedule(train, 4))


def _choices(command: str) -> dict:
    """``--option`` → its choices, of one command of the CLI."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {action.option_strings[-1]: tuple(action.choices) for action in commands[command]._actions
            if action.choices is not None and action.option_strings}


def test_the_cli_offers_exactly_the_tables():
    assert _choices("predict")["--precision"] == runtimes.PRECISIONS
    assert _choices("predict")["--runtime"] == runtimes.RUNTIME_CHOICES
    assert _choices("predict")["--decode"] == DECODERS
    assert _choices("export")["--format"] == FORMATS
    assert _choices("quantize")["--format"] == QUANTIZE_FORMATS
    assert _choices("quantize")["--runtime"] == runtimes.ONNX_RUNTIMES
    assert _choices("quantize")["--calib-mode"] == CALIB_MODES
    assert _choices("predict")["--split"] == HELD_OUT_SPLITS
    assert _choices("bench")["--split"] == HELD_OUT_SPLITS
    assert _choices("evaluate")["--split"] == SPLITS
    assert _choices("pack")["--split"] == SPLITS
    assert _choices("predict")["--format"] == KEYPOINT_FORMATS
    assert _choices("synth")["--format"] == KEYPOINT_FORMATS
    assert _choices("quantize")["--placement"] == tuple(qdq.PLACEMENTS)
    assert _choices("quantize")["--weight-scale"] == qdq.WEIGHT_SCALES
    assert _choices("quantize")["--weight-bits"] == qdq.WEIGHT_BITS


def test_the_implementations_refuse_what_their_tables_lack(tmp_path):
    from fashion_gluon.data.synthetic_schema import generate_schema_dataset
    from fashion_gluon.inference.quantize import ExportError, quantize

    # Predictor.predict_split refuses what HELD_OUT_SPLITS lacks: tests/test_predict.py
    with pytest.raises(ExportError, match=r"^calib_mode must be one of naive, entropy, got 'percentile'$"):
        quantize(None, None, calib_mode="percentile")
    with pytest.raises(ConfigError, match=r"^unknown format 'yaml'; expected one of csv, coco$"):
        generate_schema_dataset(tmp_path / "synth", "fashionai", fmt="yaml")


def test_quantize_refuses_qdq_options_for_the_mxnet_format(tmp_path, capsys):
    from fashion_gluon.cli import main
    assert main(["quantize", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "q"), "--calib-images", "4",
                 "--weight-scale", "tensor"]) == 2
    assert capsys.readouterr().err.strip() == ("fashion-gluon quantize: error: --placement, --weight-scale and "
                                               "--weight-bits choose the QDQ file of --format onnx")
    assert not (tmp_path / "q").exists()


def test_the_loader_and_the_runtimes_accept_exactly_their_rows(tmp_path):
    from fashion_gluon.inference.export import ExportError
    from fashion_gluon.inference.load import load_model

    with pytest.raises(ExportError) as error:
        load_model(tmp_path, runtime="tensorrt")
    assert str(error.value) == "unknown runtime 'tensorrt'; expected one of auto, mxnet, onnxruntime, openvino"
    with pytest.raises(ExportError) as error:
        load_model(tmp_path, precision="int8", runtime="mxnet")
    assert str(error.value) == "unknown precision 'int8'; expected one of fp32, bf16"
    with pytest.raises(ValueError, match=r"^onnxruntime runs fp32 or int8 \(int8: a QDQ file\), got precision 'bf16'$"):
        runtimes.OnnxRuntimeNet(tmp_path / "model.onnx", "bf16")
    with pytest.raises(ValueError, match=r"^precision must be one of fp32, bf16, int8, got 'fp16'$"):
        runtimes.OpenVINONet(tmp_path / "model.onnx", "fp16")
