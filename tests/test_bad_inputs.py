"""Bad inputs at every door of the command line: each ends in one clear line (no traceback) that
names the file (and row and column where there is one), exit status 2, and nothing the user
already has is changed."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from _fashionai import CATEGORIES, category_mask
from _tiny import TINY

from fashion_gluon.cli import main
from fashion_gluon.config import load_config
from fashion_gluon.data.annotations import Annotations, write_annotations
from fashion_gluon.data.sources import load_split
from fashion_gluon.data.submission import write_submission
from fashion_gluon.engine import train as train_module
from fashion_gluon.engine.transfer import check_same_model
from fashion_gluon.inference.export import export_run
from fashion_gluon.runs import load_state


def fails(capsys, *argv, lines: "int | None" = 1) -> str:
    """Run the CLI, which must fail with status 2 and no traceback; the error (one line unless
    ``lines`` says otherwise; None: the error is the last of possibly several stderr lines,
    after progress bars) is returned."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    if lines is None:
        errors = [line for line in err.splitlines() if line.startswith("fashion-gluon ")]
        assert len(errors) == 1, err
        return errors[0]
    assert len(err.splitlines()) == lines, err
    return err


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict:
    """Every file under ``folder`` (but ``skip`` folders) with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part in skip for part in p.relative_to(folder).parts)}


def listing(folder: Path) -> dict:
    """Every path under ``folder`` (and itself) with its mtime and size."""
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in [folder, *sorted(folder.rglob("*"))]}


def _link_weights(source: str, target: str) -> None:
    """Hard-link the big weights and trainer-state files (the package only ever replaces them by
    atomic renames, and :func:`damage` replaces them too), copy the rest."""
    if source.endswith((".params", ".states")):
        os.link(source, target)
    else:
        shutil.copy2(source, target)


@pytest.fixture
def run(tiny_run, tmp_path):
    """A copy of the tiny run, free to damage with :func:`damage` and :func:`truncate`."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run", copy_function=_link_weights))


@pytest.fixture
def out_csv(tmp_path):
    """An existing --out file that a failing command must leave byte-identical."""
    path = tmp_path / "precious.csv"
    path.write_bytes(b"image_id,image_category\nkeep,me\n")
    return path


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The tiny run exported as an MXNet symbol."""
    out = tmp_path_factory.mktemp("export") / "symbol"
    export_run(tiny_run, out)
    return out


def damage(path: Path, data: "bytes | str") -> None:
    """Replace ``path`` by a new file holding ``data`` (never writing into a hard-linked original)."""
    path.unlink(missing_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    damage(path, data[:len(data) // 2])


# ----------------------------------------------------------------------------- run files


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "quantize", "swa", "init-from"])
def test_corrupt_best_params_names_the_intact_last_epoch(command, run, tiny_data, tmp_path, out_csv, capsys):
    truncate(run / "best.params")
    before, kept = snapshot(run), out_csv.read_bytes()
    argv = {"predict": ["predict", "--checkpoint", run, "--data-root", tiny_data, "--out", out_csv],
            "evaluate": ["evaluate", "--checkpoint", run, "--data-root", tiny_data],
            "export": ["export", "--checkpoint", run, "--out", tmp_path / "exported"],
            "quantize": ["quantize", "--checkpoint", run, "--out", tmp_path / "int8", "--calib-images", "4"],
            "swa": ["swa", "--checkpoint", run, "--data-root", tiny_data, "--cycles", "1"],
            "init-from": ["train", "--data-root", tiny_data, "--category", "skirt", "--out", tmp_path / "new",
                          "--init-from", run, *TINY]}[command]
    err = fails(capsys, *argv)
    assert f"{run / 'best.params'}: not a readable MXNet weights file (Invalid NDArray file format" in err
    assert f"last-epoch weights {run / 'epoch-0002.params'} (epoch 2) are intact" in err
    assert snapshot(run) == before and out_csv.read_bytes() == kept
    assert not (run / "swa").exists()


def test_swa_refuses_a_bn_image_count_below_one_before_writing(run, tiny_data, capsys):
    err = fails(capsys, "swa", "--checkpoint", run, "--data-root", tiny_data, "--bn-images", "0")
    assert err == "fashion-gluon swa: error: swa arguments: swa.bn_images must be ≥ 1, got 0"
    assert not (run / "swa").exists()


def test_garbage_weights_without_another_good_file(run, tiny_data, out_csv, capsys):
    (run / "best.params").unlink()
    damage(run / "epoch-0002.params", os.urandom(4096))
    err = fails(capsys, "predict", "--checkpoint", run, "--data-root", tiny_data, "--out", out_csv)
    assert err.startswith(f"fashion-gluon predict: error: {run / 'epoch-0002.params'}: not a readable MXNet weights")
    assert err.endswith("the run has no other intact weights file")


@pytest.mark.parametrize("damage", ["params", "states", "states-missing"])
def test_resume_with_damaged_epoch_files_names_them_and_the_intact_best(damage, run, tiny_data, capsys):
    name = {"params": "epoch-0002.params", "states": "epoch-0002.states", "states-missing": "epoch-0002.states"}[damage]
    if damage == "states-missing":
        (run / name).unlink()
    else:
        truncate(run / name)
    before = snapshot(run)
    err = fails(capsys, "train", "--data-root", tiny_data, "--resume", run, "train.epochs=3")
    assert name in err and f"{run} cannot resume" in err
    assert f"its best weights {run / 'best.params'} (epoch" in err and f"--init-from {run}" in err
    assert snapshot(run) == before


@pytest.mark.parametrize("content, message", [
    ("{not json", "last.json: not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2)"),
    ('{"epoch": 2, "params": "epoch-0002.params"}', "last.json: lacks the key 'category'"),
    ('["epoch", 2]', "last.json: expected a JSON object, got list"),
    ("missing-file", "last.json names the weights file 'epoch-0009.params', which does not exist and there is no "
                     "best.params"),
])
def test_damaged_last_json(content, message, run, tiny_data, out_csv, capsys):
    if content == "missing-file":
        state = json.loads((run / "last.json").read_text())
        content = json.dumps({**state, "params": "epoch-0009.params"})
        (run / "best.params").unlink()
    damage(run / "last.json", content)
    err = fails(capsys, "predict", "--checkpoint", run, "--data-root", tiny_data, "--out", out_csv)
    assert f"{run}/{message}" in err


@pytest.mark.parametrize("content, message", [
    (b"", "empty config file"),
    (b"\xff" + bytes(range(256)), "not a YAML text file"),
    (b"model: [unclosed\n", "not valid YAML"),
    (b"- a\n- b\n", "expected a mapping of sections, got list"),
])
def test_damaged_run_config(content, message, run, tiny_data, out_csv, capsys):
    damage(run / "config.yaml", content)
    kept = out_csv.read_bytes()
    err = fails(capsys, "evaluate", "--checkpoint", run, "--data-root", tiny_data)
    assert f"{run / 'config.yaml'}: {message}" in err
    err = fails(capsys, "predict", "--checkpoint", run, "--data-root", tiny_data, "--out", out_csv)
    assert f"{run / 'config.yaml'}: {message}" in err and out_csv.read_bytes() == kept


# ----------------------------------------------------------------------------- exported models


@pytest.mark.parametrize("damage, message", [
    ("export.json not json", "export.json: not valid JSON"),
    ("export.json no format", "export.json: lacks the key 'format'"),
    ("symbol garbage", "model-symbol.json: not a readable MXNet symbol file"),
    ("params truncated", "model-0000.params: not a readable MXNet weights file (Invalid NDArray file format"),
    ("config empty", "config.yaml: empty config file"),
    ("onnx garbage", "model.onnx: not a readable ONNX model"),
    ("int8 incomplete", "export.json lists 'model-0000.params', which is not in"),
])
def test_damaged_export_directories(damage, message, exported, tiny_data, tmp_path, out_csv, capsys):
    model = Path(shutil.copytree(exported, tmp_path / "model", copy_function=_link_weights))
    meta = json.loads((model / "export.json").read_text())
    if damage == "export.json not json":
        truncate(model / "export.json")
    elif damage == "export.json no format":
        (model / "export.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "format"}))
    elif damage == "symbol garbage":
        (model / "model-symbol.json").write_text('{"nodes": [garbage')
    elif damage == "params truncated":
        truncate(model / "model-0000.params")
    elif damage == "config empty":
        (model / "config.yaml").write_text("")
    elif damage == "onnx garbage":
        (model / "model.onnx").write_bytes(os.urandom(1000))
        (model / "export.json").write_text(json.dumps({**meta, "format": "onnx", "files": ["model.onnx"]}))
    else:  # an INT8 directory whose weights went missing
        (model / "model-0000.params").unlink()
        (model / "export.json").write_text(json.dumps({**meta, "format": "int8"}))
    kept = out_csv.read_bytes()
    err = fails(capsys, "predict", "--checkpoint", model, "--data-root", tiny_data, "--out", out_csv)
    assert f"{model}/{message}" in err
    assert out_csv.read_bytes() == kept


# ----------------------------------------------------------------------------- CSV files


def pair(tmp_path, rows: int = 12) -> tuple[Path, Path]:
    """A truth CSV of ``rows`` images and a perfect submission for it."""
    rng = np.random.default_rng(3)
    categories = [CATEGORIES[i % len(CATEGORIES)] for i in range(rows)]
    kps = np.concatenate([rng.integers(0, 400, (rows, 24, 2)), np.ones((rows, 24, 1))], axis=-1)
    kps = np.where(category_mask(categories)[..., None], kps, -1).astype(np.float32)
    ids = [f"Images/{c}/{i:04d}.jpg" for i, c in enumerate(categories)]
    write_annotations(tmp_path / "truth.csv", Annotations(ids, categories, kps))
    write_submission(tmp_path / "pred.csv", ids, categories, kps[..., :2])
    return tmp_path / "truth.csv", tmp_path / "pred.csv"


@pytest.mark.parametrize("empty", ["truth", "pred"])
def test_evaluate_csv_without_rows(empty, tmp_path, capsys):
    truth, pred = pair(tmp_path)
    path = {"truth": truth, "pred": pred}[empty]
    path.write_text(path.read_text().splitlines()[0] + "\n\n")
    err = fails(capsys, "evaluate", "--truth", truth, "--pred", pred)
    assert err == (f"fashion-gluon evaluate: error: {path}: no rows to score: the file has a header but "
                   "no data rows")


def test_predict_test_list_without_rows(tiny_run, tiny_data, tmp_path, out_csv, capsys):
    root = tmp_path / "data"
    (root / "test").mkdir(parents=True)
    os.symlink(tiny_data / "train", root / "train")
    (root / "test" / "test.csv").write_text("image_id,image_category\n")
    kept = out_csv.read_bytes()
    err = fails(capsys, "predict", "--checkpoint", tiny_run, "--data-root", root, "--out", out_csv)
    assert err.endswith(f"{root / 'test' / 'test.csv'}: no rows to predict: the file has a header but no data rows")
    assert out_csv.read_bytes() == kept


@pytest.mark.parametrize("where", ["header", "cell", "binary"])
def test_garbage_csv_values_are_quoted_short(where, tmp_path, capsys):
    truth, pred = pair(tmp_path)
    lines = pred.read_text().splitlines()
    junk = "<html><body>" + "garbage " * 256
    if where == "header":
        pred.write_text(junk + "\n" + "\n".join(lines[1:]) + "\n")
    elif where == "cell":
        cells = lines[1].split(",")
        cells[2] = junk
        pred.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    else:
        pred.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2048))
    err = fails(capsys, "evaluate", "--truth", truth, "--pred", pred)
    assert str(pred) in err and len(err) < 300, err
    if where != "binary":
        assert "'<html><body>garbage garbage" in err and "…'" in err
        assert ("row 1, column 'image_id'" if where == "header" else "row 2, column 'neckline_left'") in err
    else:
        assert "not UTF-8 text" in err


def test_evaluate_lists_every_problem_of_the_prediction(tmp_path, capsys):
    truth, pred = pair(tmp_path)
    lines = pred.read_text().splitlines()
    bad = []
    for line in lines[1:]:
        cells = line.split(",")
        cells[2:4] = ["x", "1_2"]  # neckline_left, neckline_right: malformed
        bad.append(",".join(cells))
    pred.write_text("\n".join([lines[0], *bad[:-1]]) + "\n")  # the last image is missing
    err = fails(capsys, "evaluate", "--truth", truth, "--pred", pred, lines=22)
    first, *listed, more = err.splitlines()
    assert first == f"fashion-gluon evaluate: error: {pred}: 23 problem(s):"
    assert listed[0] == (f"{pred}, row 2, column 'neckline_left': 'x' is not x_y_v with integer x, y and v "
                         "in {0, 1}, nor -1_-1_-1")
    assert listed[1].startswith(f"{pred}, row 2, column 'neckline_right': '1_2' is not x_y_v")
    assert listed[19].startswith(f"{pred}, row 11, column 'neckline_right'") and len(listed) == 20
    assert more == "... and 3 more"


def test_ensemble_of_submissions_with_different_images(tmp_path, capsys):
    _, a = pair(tmp_path)
    lines = a.read_text().splitlines()
    b = tmp_path / "b.csv"
    b.write_text("\n".join([lines[0], *lines[2:], lines[1].replace("0000.jpg", "other.jpg")]) + "\n")
    out = tmp_path / "ensemble.csv"
    out.write_text("keep\n")
    err = fails(capsys, "ensemble", a, b, "--out", out)
    assert err == (f"fashion-gluon ensemble: error: {b}: 1 image(s) missing, listed in {a}: Images/blouse/0000.jpg; "
                   f"1 image(s) not in {a}: Images/blouse/other.jpg")
    assert out.read_text() == "keep\n"


# ----------------------------------------------------------------------------- training


def test_resume_of_a_finished_run_says_so(run, tiny_data, capsys):
    before = snapshot(run)
    err = fails(capsys, "train", "--data-root", tiny_data, "--resume", run)
    best = load_state(run)["best_ne"]
    assert err == (f"fashion-gluon train: error: {run} is complete: its last epoch is 2 of train.epochs=2, "
                   f"best val NE {best:.3f}; to train longer, raise train.epochs: --resume {run} train.epochs=N "
                   "with N > 2")
    assert snapshot(run) == before


def test_resume_with_more_epochs_trains_on_writing_only_to_the_run(run, tiny_data, tmp_path, capsys):
    """Also the read-only data root case: training writes logs and checkpoints to the run only."""
    root = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)  # root ignores this: the listing below is the check
    before = listing(root)
    try:
        assert main(["train", "--data-root", str(root), "--resume", str(run), "train.epochs=3",
                     "train.lr_schedule=step", "train.lr_steps=[]", "train.lr_factors=[]"]) == 0
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(stat.S_IRWXU if path.is_dir() else 0o644)
    assert listing(root) == before
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["epoch"] == 3 and record["lr"] == pytest.approx(1e-3), "the new (constant) schedule is used"
    assert load_state(run)["epoch"] == 3 and load_config(run / "config.yaml")["train"]["epochs"] == 3
    err = fails(capsys, "train", "--data-root", tiny_data, "--resume", run, "train.epochs=4", "train.batch_size=8")
    assert err.startswith(f"fashion-gluon train: error: cannot resume {run} with train.batch_size=8: it was "
                          "trained with 4; on resume only train.epochs")


def test_failing_resume_keeps_the_last_good_checkpoint(run, tiny_data, monkeypatch, capsys):
    before = snapshot(run, skip=("tb",))
    real_build_loss = train_module.build_loss

    def exploding_loss(config):
        loss = real_build_loss(config)
        return lambda *args: loss(*args) * float("nan")

    monkeypatch.setattr(train_module, "build_loss", exploding_loss)
    err = fails(capsys, "train", "--data-root", tiny_data, "--resume", run, "train.epochs=3", lines=None)
    assert f"loss became nan at epoch 3, step 1; training stopped, the last good checkpoint in {run} is kept" in err
    assert snapshot(run, skip=("tb",)) == before


def test_corrupt_training_image_on_resume_keeps_the_checkpoint(run, tiny_data, tmp_path, capsys):
    root = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    images = sorted((root / "train" / "Images").rglob("*.jpg"))
    for image in images:  # headers intact (the dataset's check passes), pixel data cut off
        data = image.read_bytes()
        image.write_bytes(data[:data.find(b"\xff\xda")])
    before = snapshot(run, skip=("tb",))
    err = fails(capsys, "train", "--data-root", root, "--resume", run, "train.epochs=3", lines=None)
    assert "cannot decode the image (corrupt, truncated or unsupported format)" in err
    assert any(f"{image}:" in err for image in images)
    assert snapshot(run, skip=("tb",)) == before


@pytest.mark.parametrize("content, message", [
    (b"", "empty config file (no settings)"),
    (b"\xff\xfe" + bytes(range(64)), "not a YAML text file"),
    (b"- train\n", "expected a mapping of sections, got list"),
    (b"train: 5\n", "section 'train' must be a mapping of keys, got int 5"),
    (b"train:\n  " + b"k" * 900 + b": 1\n", "unknown config key 'train.kkkkkkkk"),
])
def test_bad_config_files(content, message, tiny_data, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    err = fails(capsys, "train", "--data-root", tiny_data, "--category", "all", "--out", tmp_path / "out",
                "--config", config)
    assert err.startswith(f"fashion-gluon train: error: {config}: {message}") and "k" * 100 not in err
    assert not (tmp_path / "out").exists()


def test_init_from_a_run_of_another_model(tiny_run, tiny_data, tmp_path, capsys):
    err = fails(capsys, "train", "--data-root", tiny_data, "--category", "skirt", "--out", tmp_path / "new",
                "--init-from", tiny_run, *TINY, "model.kwargs.channels=16")
    assert err == (f"fashion-gluon train: error: --init-from {tiny_run}: it was trained with "
                   "model.kwargs={'channels': 32}, this run has model.kwargs={'channels': 16}; initialize from a "
                   "run of the same model")
    assert not (tmp_path / "new").exists()
    check_same_model(tiny_run, load_config(overrides=TINY + ["data.input_size=[96,96]"]))  # another size is fine


# ----------------------------------------------------------------------------- scale-out commands


def test_pack_with_a_missing_image(tiny_data, tmp_path, capsys):
    root = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    rows = load_split(root, "train")
    image, image_id, row = rows.image_path(3), rows.image_ids[3], rows.file_row(3)  # its row in train.csv
    image.unlink()
    err = fails(capsys, "pack", "--data-root", root, "--category", "all", "--out", tmp_path / "x.rec", "--quiet")
    assert err == (f"fashion-gluon pack: error: {image}, row {row}, column 'image_id': no such image file "
                   f"(listed in {rows.file_of(3)})")
    assert (root / "train" / "Annotations" / "train.csv").read_text().splitlines()[row - 1].startswith(image_id)
    assert not (tmp_path / "x.rec").exists() and not (tmp_path / "x.idx").exists()


@pytest.mark.parametrize("host, message", [
    ("no-such-host.invalid", "cannot resolve host 'no-such-host.invalid'"),
    pytest.param("127.0.0.2", "cannot reach '127.0.0.2' over ssh (",
                 marks=pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client")),
])
def test_launch_with_an_unreachable_host(host, message, tiny_data, tmp_path, capsys):
    hosts = tmp_path / "hosts"
    hosts.write_text(f"# the cluster\n{host}\n")
    err = fails(capsys, "launch", "--hosts", hosts, "--timeout", "30", "--", "train", "--data-root", tiny_data,
                "--category", "all", "--out", tmp_path / "dist", "train.kvstore=dist_sync")
    assert err.startswith(f"fashion-gluon launch: error: hosts file {hosts}, line 2: {message}")
    assert not (tmp_path / "dist").exists()
