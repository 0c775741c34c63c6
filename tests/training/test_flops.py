"""FLOP counts against hand counts, per layer kind."""

import keras
import pytest

from keras_net2net import models
from keras_net2net.training import flops


def _model(layer, shape, **call_kwargs):
    inputs = keras.Input(shape)
    return keras.Model(inputs, layer(inputs, **call_kwargs))


def test_dense_counts_two_flops_per_multiply_add_at_every_position():
    # 5 positions x 3 inputs x 4 units multiply-adds.
    model = _model(keras.layers.Dense(4, name="fc"), (5, 3))
    assert flops.layer_flops(model) == {"fc": 2 * 5 * 3 * 4}


@pytest.mark.parametrize("strides,padding,out", [(1, "same", 16), (2, "valid", 7)])
def test_conv2d_counts_kernel_times_output_positions(strides, padding, out):
    model = _model(keras.layers.Conv2D(8, 3, strides=strides, padding=padding,
                                       name="conv"), (16, 16, 3))
    assert flops.layer_flops(model) == {"conv": 2 * out * out * 3 * 3 * 3 * 8}


def test_attention_counts_projections_scores_and_output():
    # 10 queries of width 12 attend to 7 keys/values of width 6; 3 heads,
    # key_dim 4, value_dim 5, output width 12 (the query's).
    query, value = keras.Input((10, 12)), keras.Input((7, 6))
    mha = keras.layers.MultiHeadAttention(3, 4, value_dim=5, name="mha")
    model = keras.Model([query, value], mha(query, value))
    hand = (10 * 12 * 3 * 4      # q projection
            + 7 * 6 * 3 * 4      # k projection (key = value)
            + 7 * 6 * 3 * 5      # v projection
            + 3 * 10 * 7 * 4     # q.k for every head and pair
            + 3 * 10 * 7 * 5     # softmax weights times values
            + 10 * 3 * 5 * 12)   # output projection
    assert flops.layer_flops(model) == {"mha": 2 * hand}


def test_training_step_is_three_forward_passes_over_the_batch():
    model = models.build_model("gpt", (16,), 128, width=16, depth=1)
    counted = flops.layer_flops(model)
    # Embeddings, norms and adds are not counted; MHA, the FFN and logits are.
    assert set(counted) == {"block1_mha", "block1_ffn_in", "block1_ffn_out", "logits"}
    assert counted["logits"] == 2 * 16 * 16 * 128
    assert flops.training_flops(model, batch_size=8) == 3 * 8 * sum(counted.values())
    wider = models.build_model("gpt", (16,), 128, width=32, depth=1)
    assert flops.forward_flops(wider) > 2 * flops.forward_flops(model)
