"""Tests of net2net-expand: flag parsing, file safety, end to end."""

import hashlib
import json

from absl import flags
import keras
import numpy as np
import pytest

from keras_net2net import models
from keras_net2net.bin import expand
from keras_net2net.bin import flags as shared_flags

EXPAND = "keras_net2net.bin.expand"


@pytest.fixture
def teacher_path(tmp_path):
    teacher = models.build_model("cnn", (8, 8, 1), 10, widths=[4, 8, 16])
    path = tmp_path / "teacher.keras"
    teacher.save(path)
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("text,expected", [
    (None, None),
    ("1.5", 1.5),
    ("2", 2.0),
    ("conv1=16,fc1=64", {"conv1": 16, "fc1": 64}),
    ("conv1=1.5", {"conv1": 1.5}),
])
def test_parse_widen(text, expected):
    assert shared_flags.parse_widen(text) == expected


@pytest.mark.parametrize("text,expected", [
    (None, None),
    ("conv2,fc1", ["conv2", "fc1"]),
    ("fc1:2,conv2:residual", {"fc1": 2, "conv2": "residual"}),
    ("fc1,conv2:identity", {"fc1": 1, "conv2": "identity"}),
])
def test_parse_deepen(text, expected):
    assert shared_flags.parse_deepen(text) == expected


def _parse(*argv):
    flag_values = flags.FlagValues()
    expand.define_flags(flag_values)
    flag_values(["net2net-expand", *argv])
    return flag_values


@pytest.mark.parametrize("argv,flag", [
    (["--widen=2"], "--output"),
    (["--output=s.keras"], "--widen"),
    (["--output=s.keras", "--widen=conv1=x"], "--widen"),
    (["--output=s.keras", "--deepen=fc1:0"], "--deepen"),
    (["--output=s.keras", "--deepen=fc1:twice"], "--deepen"),
    (["--output=s.h5", "--widen=2"], "--output"),
    (["--output=s.keras", "--mapping=sideways", "--widen=2"], "--mapping"),
])
def test_bad_flags_name_the_flag(teacher_path, argv, flag):
    with pytest.raises(flags.Error, match=flag):
        _parse(f"--input={teacher_path}", *argv)


def test_output_may_not_be_the_input(teacher_path):
    with pytest.raises(flags.Error, match="never overwritten"):
        _parse(f"--input={teacher_path}", f"--output={teacher_path}",
               "--widen=2")


def test_missing_input_is_a_usage_error(tmp_path):
    with pytest.raises(flags.Error, match="--input"):
        _parse(f"--input={tmp_path / 'none.keras'}",
               f"--output={tmp_path / 's.keras'}", "--widen=2")


def test_existing_output_is_kept_unless_overwrite(teacher_path, tmp_path):
    output = tmp_path / "student.keras"
    output.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        expand.expand_file(str(teacher_path), str(output), widen=2.0)
    assert output.read_bytes() == b"precious"
    expand.expand_file(str(teacher_path), str(output), widen=2.0,
                       overwrite=True)
    assert keras.models.load_model(output).get_layer("conv1").filters == 8


def test_corrupt_input_error_names_flag_and_file(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match=r"--input=.*broken\.keras"):
        expand.expand_file(str(bad), str(tmp_path / "s.keras"), widen=2.0)
    assert not (tmp_path / "s.keras").exists()


def test_refused_growth_names_the_layer_and_writes_nothing(teacher_path,
                                                           tmp_path):
    output = tmp_path / "s.keras"
    with pytest.raises(ValueError, match="nope"):
        expand.expand_file(str(teacher_path), str(output), widen={"nope": 3})
    assert not output.exists()
    assert not (tmp_path / "s.report.json").exists()


def test_report_path_sits_beside_the_student():
    assert expand.report_path("out/student.keras") == "out/student.report.json"


def test_expand_end_to_end(run_main, teacher_path, tmp_path, digits_dir):
    before = _digest(teacher_path)
    output = tmp_path / "out" / "student.keras"
    result = run_main(EXPAND, f"--input={teacher_path}", f"--output={output}",
                        "--widen=conv1=8,fc1=64", "--deepen=conv2,fc1:2",
                        "--seed=3", "--dataset=digits",
                        f"--data_dir={digits_dir}", "--num_examples=64")
    assert result.returncode == 0, result.stderr[-3000:]
    assert _digest(teacher_path) == before
    teacher = keras.models.load_model(teacher_path)
    student = keras.models.load_model(output)
    assert student.get_layer("conv1").filters == 8
    assert student.get_layer("fc1").units == 64
    assert len(student.layers) > len(teacher.layers)
    images = np.random.default_rng(0).random((32, 8, 8, 1), np.float32)
    expected, got = teacher.predict(images, verbose=0), student.predict(
        images, verbose=0)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-5
    report = json.loads((tmp_path / "out" / "student.report.json").read_text())
    assert report["params_after"] == student.count_params()
    assert json.loads(result.stdout.strip().splitlines()[-1])[
        "max_relative_error"] < 1e-5


def test_expand_binary_refuses_corrupt_input(run_main, tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"\x00" * 100)
    result = run_main(EXPAND, f"--input={bad}",
                        f"--output={tmp_path / 's.keras'}", "--widen=2")
    assert result.returncode == 1
    assert "net2net-expand: error: Expected a .keras file" in result.stderr
    assert f"Received: --input={bad}" in result.stderr
