"""Tests of net2net-evaluate on models whose predictions are known."""

import json

import keras
import numpy as np
import pytest

from keras_net2net.data import inputs
from keras_net2net.training import evaluation

EVALUATE = "keras_net2net.bin.evaluate"


def _constant(label, softmax=False):
    """Predicts `label` for every input: zero kernel, one-hot bias."""
    inputs_ = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs_)
    bias = np.zeros(10, np.float32)
    bias[label] = 5.0
    outputs = keras.layers.Dense(
        10, kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(bias),
        activation="softmax" if softmax else None)(x)
    return keras.Model(inputs_, outputs)


def _bright_or_dark(threshold):
    """Predicts 0 when the mean pixel exceeds `threshold`, else 1."""
    inputs_ = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs_)
    kernel = np.zeros((64, 10), np.float32)
    kernel[:, 0] = 1.0 / 64
    bias = np.zeros(10, np.float32)
    bias[1] = threshold
    bias[2:] = -100.0
    dense = keras.layers.Dense(10)
    outputs = dense(x)
    dense.set_weights([kernel, bias])
    return keras.Model(inputs_, outputs)


@pytest.fixture(scope="module")
def eval_arrays(digits_dir):
    return inputs.load_arrays("digits", "eval", data_dir=digits_dir)


def test_agreement_of_models_with_known_predictions(eval_arrays):
    images, labels = eval_arrays
    threshold = float(np.median(images.mean(axis=(1, 2, 3))))
    bright = images.mean(axis=(1, 2, 3)) > threshold
    result = evaluation.compare_models(_constant(0), _bright_or_dark(threshold),
                                       images, labels, batch_size=100,
                                       latency_batches=3)
    assert result["agreement"] == pytest.approx(bright.mean())
    assert result["a"]["accuracy"] == pytest.approx(np.mean(labels == 0))
    expected_b = np.where(bright, 0, 1)
    assert result["b"]["accuracy"] == pytest.approx(
        np.mean(labels == expected_b))
    assert result["num_examples"] == 360
    assert result["a"]["params"] == 650
    assert result["a"]["latency_ms_per_batch"] > 0


def test_identical_and_disjoint_models(eval_arrays):
    images, labels = eval_arrays
    same = evaluation.compare_models(_constant(3), _constant(3, softmax=True),
                                     images, labels, latency_batches=1)
    assert same["agreement"] == 1.0
    # Logits vs softmax outputs: the loss is read the right way for both.
    assert same["a"]["loss"] == pytest.approx(same["b"]["loss"], rel=1e-5)
    disjoint = evaluation.compare_models(_constant(3), _constant(4), images,
                                         labels, latency_batches=1)
    assert disjoint["agreement"] == 0.0
    assert "agreement: 0.0000 of 360" in evaluation.format_table(disjoint)


def test_evaluate_binary_writes_table_and_json(run_main, tmp_path,
                                               digits_dir):
    _constant(2).save(tmp_path / "a.keras")
    _constant(2, softmax=True).save(tmp_path / "b.keras")
    output = tmp_path / "eval.json"
    result = run_main(EVALUATE, f"--a={tmp_path / 'a.keras'}",
                        f"--b={tmp_path / 'b.keras'}", f"--output={output}",
                        f"--data_dir={digits_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "agreement: 1.0000 of 360" in result.stdout
    figures = json.loads(output.read_text())
    assert figures["agreement"] == 1.0 and figures["dataset"] == "digits"


def test_evaluate_binary_names_a_bad_model_file(run_main, tmp_path):
    (tmp_path / "a.keras").write_bytes(b"junk")
    result = run_main(EVALUATE, f"--a={tmp_path / 'a.keras'}",
                        f"--b={tmp_path / 'a.keras'}")
    assert result.returncode == 1
    assert "Received: --a=" in result.stderr
