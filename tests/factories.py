"""Small model factories shared by the growth tests, and the one randomiser
(`randomize_state`) that every growth test, the fuzz generator and the zoo
use so that no weight is left at its initial constant."""

import keras
import numpy as np

L = keras.layers


def randomize_state(model, seed=0, spread=0.5):
    """Gives every weight that still holds its initial constant random values.

    Biases, BatchNorm/LayerNorm/GroupNorm gamma and beta, moving statistics,
    LayerScale, PReLU alpha: Keras starts them all at a constant, and a rule
    that drops, zeroes or mis-indexes a constant tensor computes the same
    function as the right rule. Kernels are random already and are left alone.

    The rule is declarative: a float variable whose entries are all equal is
    redrawn by what that constant says it is.
    - zero (bias, beta, moving mean, PReLU alpha): a shift, normal with
      std 0.6 * spread;
    - any other constant (gamma, moving variance, LayerScale at 1e-6): a
      scale, uniform in [1 - spread, 1 + spread], so variances stay positive.
    Integer state (seed generators, counts) is left alone.

    Args:
        model: a Keras model; nested models are walked.
        seed: seeds the draws (layers are visited in a fixed order).
        spread: the scale of the draws, O(1) so that a wrong rule shows far
            above a 1e-5 tolerance. Very deep nets (EfficientNetV2-M/L, B7)
            become chaotic in float32 at 0.5; benchmarks/zoo.py uses 0.2.

    Returns:
        `model`, with its variables assigned in place.
    """
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        for v in layer.weights:
            if "float" not in str(v.dtype):
                continue
            value = np.asarray(v.numpy())
            if value.size == 0 or np.ptp(value) != 0:
                continue
            if value.flat[0] == 0:
                draw = rng.normal(0, 0.6 * spread, v.shape)
            else:
                draw = rng.uniform(1 - spread, 1 + spread, v.shape)
            v.assign(draw.astype(v.dtype))
    return model


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def mlp():
    inp = keras.Input((12,))
    x = L.Dense(16, activation="relu", name="fc1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Dropout(0.2)(x)
    x = L.Dense(8, activation="tanh", name="fc2")(x)
    x = L.PReLU(name="prelu")(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x), name="mlp")


def dense_rank3():
    inp = keras.Input((5, 6))
    x = L.Dense(8, activation="gelu", name="fc1")(inp)
    x = L.LayerNormalization(name="ln")(x)
    x = L.Dense(8, name="fc2")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def cnn_flatten():
    inp = keras.Input((10, 10, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(5, 3, strides=2, dilation_rate=1, name="conv2")(x)
    x = L.LeakyReLU(0.1)(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(9, activation="relu", name="fc1")(x)
    return keras.Model(inp, L.Dense(4, name="logits")(x))


def cnn_channels_first():
    # Spatial sizes 7, 3, 1 equal no channel count the tests grow to: Keras'
    # TF ops.add puts a channels_first bias on the last axis when they match
    # (tests/test_keras_quirks.py).
    inp = keras.Input((3, 7, 7))
    x = L.Conv2D(4, 3, padding="same", data_format="channels_first", name="conv1")(inp)
    x = L.BatchNormalization(axis=1, name="bn1")(x)
    x = L.Activation("relu")(x)
    x = L.AveragePooling2D(2, data_format="channels_first")(x)
    x = L.Conv2D(5, 3, dilation_rate=1, data_format="channels_first", name="conv2")(x)
    a = L.Flatten(data_format="channels_first", name="flat_cf")(x)
    b = L.GlobalMaxPooling2D(data_format="channels_first")(x)
    x = L.Concatenate()([L.Dense(6, name="fc_a")(a), L.Dense(3, name="fc_b")(b)])
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def residual():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.Activation("relu")(x)
    y = L.Conv2D(8, 3, padding="same", name="b1_conv1")(x)
    y = L.BatchNormalization(name="b1_bn1")(y)
    y = L.Activation("relu")(y)
    y = L.Conv2D(8, 3, padding="same", name="b1_conv2")(y)
    x = L.Activation("relu")(L.Add(name="b1_add")([x, y]))
    shortcut = L.Conv2D(12, 1, strides=2, name="b2_proj")(x)
    y = L.Conv2D(12, 3, strides=2, padding="same", name="b2_conv1")(x)
    y = L.BatchNormalization(name="b2_bn1")(y)
    x = shortcut + y  # functional op, not a layer
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(5, name="logits")(x), name="resnet")


def inception():
    inp = keras.Input((9, 9, 4))
    a = L.Conv2D(4, 1, name="br1")(inp)
    b = L.Conv2D(3, 1, name="br2a")(inp)
    b = L.Conv2D(5, 3, padding="same", name="br2b")(b)
    c = L.MaxPooling2D(3, strides=1, padding="same")(inp)
    c = L.Conv2D(2, 1, name="br3")(c)
    x = L.Concatenate(name="mixed")([a, b, c])
    x = L.BatchNormalization(name="mixed_bn")(x)
    x = L.Conv2D(6, 3, name="post")(x)
    x = keras.ops.concatenate([x, x * 0.5], axis=-1)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x))


def squeeze_excite():
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", activation="swish", name="conv")(inp)
    s = L.GlobalAveragePooling2D(keepdims=False)(x)
    s = L.Dense(4, activation="relu", name="se_reduce")(s)
    s = L.Dense(8, activation="sigmoid", name="se_expand")(s)
    s = L.Reshape((1, 1, 8), name="se_reshape")(s)
    x = L.Multiply(name="se_scale")([x, s])
    x = keras.ops.relu6(x + 3.0) * (1.0 / 6.0)  # hard-swish style scalars
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x))


def depthwise_separable():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = L.DepthwiseConv2D(3, padding="same", name="dw1")(x)
    x = L.BatchNormalization(name="dw1_bn")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw2")(x)
    x = L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep")(x)
    x = L.Conv2D(5, 1, name="pw")(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def conv1d_3d_transpose():
    a_in = keras.Input((12, 2), name="seq")
    a = L.Conv1D(4, 3, padding="causal", name="c1d")(a_in)
    a = L.DepthwiseConv1D(3, padding="same", name="dw1d")(a)
    a = L.SeparableConv1D(5, 3, name="sep1d")(a)
    a = L.Conv1DTranspose(3, 3, name="c1dt")(a)
    a = L.UpSampling1D()(a)
    a = L.ZeroPadding1D(1)(a)
    a = L.Cropping1D(1)(a)
    a = L.GlobalAveragePooling1D()(a)
    b_in = keras.Input((4, 4, 4, 1), name="vol")
    b = L.Conv3D(3, 2, name="c3d")(b_in)
    # 5 filters on a 3x3x3 volume: no width it grows to meets the last spatial
    # size (the channels_first bias quirk, tests/test_keras_quirks.py).
    b = L.Conv3D(5, 1, data_format="channels_first", name="c3d_cf")(L.Permute((4, 1, 2, 3))(b))
    b = L.Permute((2, 3, 4, 1))(b)
    b = L.Conv3DTranspose(4, 2, strides=2, name="c3dt")(b)
    b = L.MaxPooling3D(2)(b)
    b = L.GlobalMaxPooling3D()(b)
    c = L.Conv2DTranspose(3, 3, strides=2, name="c2dt")(L.Reshape((2, 2, 1))(b_in[:, 0, 0, :, :]))
    c = L.Flatten()(c)
    x = L.Concatenate()([a, b, c])
    return keras.Model([a_in, b_in], L.Dense(2, name="logits")(x))


def embedding_text():
    inp = keras.Input((7,), dtype="int32")
    x = L.Embedding(20, 6, name="embed")(inp)
    x = L.Conv1D(5, 3, activation="relu", name="conv")(x)
    x = L.GlobalMaxPooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def norms():
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(8, 3, name="conv_gn")(inp)
    x = L.GroupNormalization(4, name="gn")(x)
    x = L.Conv2D(6, 1, name="conv_ln")(x)
    x = L.LayerNormalization(name="ln")(x)
    x = L.Conv2D(4, 1, name="conv_free")(x)
    x = L.UnitNormalization(axis=[1, 2])(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def activations_and_merges():
    inp = keras.Input((10,))
    a = L.Dense(6, activation="elu", name="a")(inp)
    b = L.Dense(6, activation="selu", name="b")(inp)
    x = L.Subtract()([a, b])
    y = L.Maximum()([a, L.Minimum()([a, b])])
    z = L.Average()([x, y])
    z = L.ELU()(z)
    z = keras.ops.square(z) - 1.0
    z = L.Dense(5, name="c")(z)
    z = L.Softmax(name="softmax_channels")(z)
    z = L.Dense(4, name="d")(z)
    return keras.Model(inp, L.Dense(2, name="logits")(z))


def _sub_functional():
    inp = keras.Input((5,))
    x = L.Dense(7, activation="relu", name="inner_fc")(inp)
    return keras.Model(inp, L.Dense(5, name="inner_out")(x), name="block")


def nested_and_shared():
    inp = keras.Input((4,))
    x = L.Dense(5, name="pre")(inp)
    block = _sub_functional()
    x = block(x)
    seq = keras.Sequential([keras.Input((5,)), L.Dense(6, name="seq_fc"), L.ReLU()], name="seq")
    x = seq(x)
    shared = L.Dense(6, name="shared")
    y = shared(x)
    y = shared(L.ReLU()(y))
    return keras.Model(inp, L.Dense(2, name="logits")(y))


def multi_io():
    a_in = keras.Input((6,), name="a")
    b_in = keras.Input((4, 4, 2), name="b")
    a = L.Dense(5, activation="relu", name="fa")(a_in)
    b = L.Conv2D(5, 3, name="cb")(b_in)
    b = L.GlobalAveragePooling2D()(b)
    x = L.Add(name="join")([a, b])
    h = L.Dense(6, activation="relu", name="hidden")(x)
    return keras.Model([a_in, b_in], [L.Dense(2, name="out1")(h), L.Dense(3, name="out2")(x)])


def sequential():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(4, 3, activation="relu", name="conv1"),
        L.MaxPooling2D(2),
        L.Conv2D(6, 3, padding="same", activation="relu", name="conv2"),
        L.Flatten(),
        L.Dense(10, activation="relu", name="fc1"),
        L.Dense(3, name="logits"),
    ], name="seq_cnn")


def reshape_permute_padding():
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 3, padding="same", dilation_rate=2, name="conv1")(inp)
    x = L.ZeroPadding2D(1)(x)
    x = L.Cropping2D(1)(x)
    x = L.UpSampling2D()(x)
    x = L.SpatialDropout2D(0.1)(x)
    x = L.Reshape((144, 4), name="to_seq")(x)
    x = L.Conv1D(5, 3, name="conv_seq")(x)
    x = L.Permute((2, 1))(x)
    x = L.Dense(3, name="time_mix")(x)
    x = L.Permute((2, 1))(x)
    x = L.Reshape((-1,))(x)
    x = L.GaussianNoise(0.1)(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def barriers():
    inp = keras.Input((8,))
    x = L.Dense(6, name="before_lambda")(inp)
    x = L.Lambda(lambda t: t * 2.0, name="lam")(x)
    x = L.Dense(5, name="after_lambda")(x)
    x = L.Conv1D(4, 1, groups=1, name="unused_conv")(L.Reshape((5, 1))(x))
    x = L.Flatten()(x)
    x = L.Dense(6, name="free")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def grouped_conv():
    inp = keras.Input((6, 6, 4))
    x = L.Conv2D(8, 3, name="c1")(inp)
    x = L.Conv2D(8, 3, groups=2, name="grouped")(x)
    x = L.Conv2D(4, 1, name="c3")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def add_to_concat():
    """A conv output added to a concatenation (Inception-ResNet, NASNet): the
    conv's group is split run by run to line up with the branches."""
    inp = keras.Input((6, 6, 3))
    a = L.Conv2D(3, 1, name="branch_a")(inp)
    b = L.Conv2D(5, 3, padding="same", name="branch_b")(inp)
    x = L.Concatenate(name="mixed")([a, b])
    y = L.Conv2D(8, 3, padding="same", name="up")(L.ReLU()(x))
    x = L.Add(name="res")([x, y])
    x = L.BatchNormalization(name="res_bn")(x)
    x = L.Conv2D(4, 1, name="head")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


ALL = [add_to_concat, mlp, dense_rank3, cnn_flatten, cnn_channels_first, residual, inception,
       squeeze_excite, depthwise_separable, conv1d_3d_transpose, embedding_text, norms,
       activations_and_merges, nested_and_shared, multi_io, sequential,
       reshape_permute_padding, barriers, grouped_conv]


# Shared by the rule tests and tests/backend_worker.py (the JAX worker).

def pre_norm_block(x, width, norm, i):
    h = norm(name=f"norm{i}_attn")(x)
    h = L.MultiHeadAttention(2, 4, name=f"mha{i}")(h, h)
    x = L.Add(name=f"res{i}_attn")([x, h])
    h = norm(name=f"norm{i}_ffn")(x)
    h = L.Dense(2 * width, activation="gelu", name=f"ffn{i}_in")(h)
    h = L.Dense(width, name=f"ffn{i}_out")(h)
    return L.Add(name=f"res{i}_ffn")([x, h])


def pre_ln_encoder(norm=L.LayerNormalization, width=6):
    """Token + position embeddings, two pre-norm blocks, a final norm."""
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    positions = keras.Input((5,), dtype="int32", name="positions")
    x = L.Add()([L.Embedding(20, width, name="token_embed")(tokens),
                 L.Embedding(5, width, name="position_embed")(positions)])
    for i in range(2):
        x = pre_norm_block(x, width, norm, i)
    x = norm(name="final_norm")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model([tokens, positions], L.Dense(3, name="logits")(x))


# Sequence length and vocabulary of the recurrent test models.
T, VOCAB = 6, 11


def stacked_masked():
    """Embedding(mask_zero) -> LSTM -> GRU(reset_after=False, go_backwards) ->
    GRU(reset_after=True) -> SimpleRNN, a masked average, a Dense head."""
    tokens = keras.Input((T,), dtype="int32")
    x = L.Embedding(VOCAB, 4, mask_zero=True, name="emb")(tokens)
    x = L.LSTM(5, return_sequences=True, name="lstm")(x)
    x = L.GRU(4, return_sequences=True, reset_after=False, go_backwards=True, name="gru_v1")(x)
    x = L.GRU(3, return_sequences=True, reset_after=True, name="gru_v3")(x)
    pooled = L.GlobalAveragePooling1D(name="pool")(x)
    last = L.SimpleRNN(4, name="srnn")(x)
    x = L.Concatenate(name="cat")([pooled, last])
    return keras.Model(tokens, L.Dense(2, name="logits")(x))
