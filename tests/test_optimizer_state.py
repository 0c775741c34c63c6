"""expand_optimizer: the teacher optimizer's state carried through growth.

Every test trains the teacher a few steps (so its slots hold history), grows
it, carries the optimizer, checks the teacher and its optimizer unchanged,
then takes one step on teacher and student with the same batch and compares
what moved. Float64 teachers: the rules are exact up to Adam's epsilon, which
weighs 1/F times more on a slot scaled by F; the tests use epsilon=1e-20 so
that the comparison shows the rules, not epsilon (elements with gradients of
1e-7 feel an epsilon of 1e-12 at 1e-5).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_net2net as n2n
from keras_net2net import errors
from keras_net2net import optimizer_state
from keras_net2net.rules.base import Mode
from tests import factories
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot

L = keras.layers
EPS = 1e-20



# -- teachers -------------------------------------------------------------------
def lstm_model():
    tokens = keras.Input((5,), dtype="int32")
    x = L.Embedding(12, 4, name="emb")(tokens)
    x = L.LSTM(5, return_sequences=True, name="lstm")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, L.Dense(3, name="logits")(x))


def encoder():
    """Embedding, pre-LN multi-head self-attention, FFN."""
    tokens = keras.Input((6,), dtype="int32")
    x = L.Embedding(20, 8, name="embed")(tokens)
    h = L.LayerNormalization(name="ln1")(x)
    h = L.MultiHeadAttention(2, 4, name="mha")(h, h)
    x = L.Add()([x, h])
    h = L.Dense(12, activation="gelu", name="ffn_up")(x)
    x = L.Add()([x, L.Dense(8, name="ffn_down")(h)])
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, L.Dense(3, name="logits")(x))


def gqa():
    inp = keras.Input((6, 5))
    x = L.Dense(8, name="stem")(inp)
    h = L.GroupQueryAttention(4, 4, 2, name="gqa")(x, x)
    x = L.Add()([x, h])
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x))


MHA_WIDEN = {"mha": {"num_heads": 3, "key_dim": 6, "value_dim": 5}, "embed": 16,
             "ffn_up": 20}
GROWTHS = {
    "dense_bn": (factories.mlp, dict(widen={"fc1": 24, "fc2": 11}, deepen=["fc1"])),
    "conv_bn": (factories.cnn_flatten, dict(widen=1.5)),
    "layer_norm": (factories.dense_rank3, dict(widen=2.0)),
    "mha": (encoder, dict(widen=MHA_WIDEN)),
    "gqa": (gqa, dict(widen={"gqa": {"num_key_value_heads": 3, "head_dim": 6}, "stem": 12})),
    "lstm": (lstm_model, dict(widen={"lstm": 8, "emb": 6})),
}


# -- helpers --------------------------------------------------------------------
def _batch(model, seed=1):
    x = probe(model, seed)
    out = model(x if len(x) > 1 else x[0], training=False)
    target = np.random.default_rng(seed).normal(size=out.shape)
    return x, target


def _gradients(model, x, target):
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        y = model(x if len(x) > 1 else x[0], training=False)
        loss = tf.reduce_mean(tf.square(y - tf.cast(target, y.dtype)))
    return tape.gradient(loss, variables), variables


def _step(model, optimizer, x, target):
    """One optimizer step; returns {variable path: (before, delta, gradient)}."""
    grads, variables = _gradients(model, x, target)
    grads = [tf.convert_to_tensor(g) if g is not None else None for g in grads]  # Embedding's
    before = [np.asarray(v.numpy(), np.float64) for v in variables]
    optimizer.apply_gradients(zip(grads, variables))
    return {id(v): (b, np.asarray(v.numpy(), np.float64) - b,
                    np.asarray(g, np.float64) if g is not None else np.zeros_like(b))
            for v, b, g in zip(variables, before, grads)}


def _train(model, optimizer, steps=3, seed=10):
    for i in range(steps):
        x, target = _batch(model, seed + i)
        _step(model, optimizer, x, target)


def _gather(value, transforms):
    """The teacher's per-element values at each student element's source."""
    for axis, src, _, _ in transforms:
        value = np.take(value, np.asarray(src), axis=axis % value.ndim)
    return value


def _optimizer_snapshot(optimizer):
    return [np.array(v.numpy()) for v in optimizer.variables]


def _grow_and_carry(teacher, optimizer, growth, **kwargs):
    snap, opt_snap = snapshot(teacher), _optimizer_snapshot(optimizer)
    x, _ = _batch(teacher)
    # float64 up to the backend's float32 attention scale 1/sqrt(key_dim).
    rtol = 1e-7 if keras.config.dtype_policy().name == "float64" else 1e-5
    student = n2n.expand_model(teacher, seed=0, verify_data=x, tolerance=rtol, **growth)
    new = n2n.expand_optimizer(optimizer, student, **kwargs)
    assert_unchanged(teacher, snap)
    for a, b in zip(_optimizer_snapshot(optimizer), opt_snap):
        np.testing.assert_array_equal(a, b)
    assert_preserved(teacher, student, x, rtol=rtol)
    assert int(new.iterations.numpy()) == int(optimizer.iterations.numpy())
    return student, new


def _teacher(factory, optimizer, seed=0):
    teacher = factories.randomize_state(factory(), seed)
    _train(teacher, optimizer)
    return teacher


def _assert_each_copy_steps_as_its_unit(teacher, student, t_steps, s_steps, decay=0.0):
    """Each carried element moved as its source moved in the teacher (the
    decoupled weight decay, proportional to the weight, taken out), except
    elements whose gradient is zero in the student (the key-side copies of
    attention key dims), which must not move. Weights whose gradient is zero
    in exact arithmetic (attention's key bias: softmax ignores a shift common
    to all keys) step by rounding noise, and are not compared."""
    checked = 0
    for old, new, transforms in optimizer_state.weight_map(student):
        if not new.trainable or np.max(np.abs(t_steps[id(old)][2])) < 1e-12:
            continue
        w, delta, _ = t_steps[id(old)]
        w_s, delta_s, grad_s = s_steps[id(new)]
        expected = _gather(delta + decay * w, transforms)
        got = delta_s + decay * w_s
        still = (grad_s == 0) & (_gather(t_steps[id(old)][2], transforms) != 0)
        np.testing.assert_allclose(got[still], 0.0, atol=1e-9 * np.max(np.abs(got)))
        scale = max(np.max(np.abs(expected)), 1e-300)
        error = np.max(np.abs(np.where(still, 0.0, got - expected))) / scale
        assert error <= 1e-6, (new.path, error)
        checked += 1
    assert checked


# -- one step after growth --------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GROWTHS))
@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_moves_every_copy_as_the_teachers_unit(float64, name, kind):
    factory, growth = GROWTHS[name]
    make = {"adam": lambda: keras.optimizers.Adam(1e-2, epsilon=EPS),
            "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1, epsilon=EPS)}[kind]
    optimizer = make()
    teacher = _teacher(factory, optimizer)
    student, new = _grow_and_carry(teacher, optimizer, growth)
    assert type(new) is type(optimizer)
    x, target = _batch(teacher, seed=5)
    s_steps = _step(student, new, x, target)
    t_steps = _step(teacher, optimizer, x, target)
    decay = 1e-2 * 0.1 if kind == "adamw" else 0.0
    _assert_each_copy_steps_as_its_unit(teacher, student, t_steps, s_steps, decay)


OTHERS = {
    "nadam": lambda: keras.optimizers.Nadam(1e-2, epsilon=EPS),
    "adamax": lambda: keras.optimizers.Adamax(1e-2, epsilon=EPS),
    "amsgrad": lambda: keras.optimizers.Adam(1e-2, epsilon=EPS, amsgrad=True),
    "rmsprop": lambda: keras.optimizers.RMSprop(1e-2, epsilon=EPS),
    "rmsprop_centered_momentum": lambda: keras.optimizers.RMSprop(
        1e-2, momentum=0.9, centered=True, epsilon=EPS),
    "adagrad": lambda: keras.optimizers.Adagrad(1e-2, epsilon=EPS),
    "adadelta": lambda: keras.optimizers.Adadelta(1.0, epsilon=EPS),
    "lion": lambda: keras.optimizers.Lion(1e-3),
}


@pytest.mark.parametrize("kind", sorted(OTHERS))
def test_scale_invariant_optimizers_move_every_copy_as_the_teachers_unit(float64, kind):
    optimizer = OTHERS[kind]()
    teacher = _teacher(encoder, optimizer)
    student, new = _grow_and_carry(teacher, optimizer, dict(widen=MHA_WIDEN))
    x, target = _batch(teacher, seed=5)
    s_steps = _step(student, new, x, target)
    t_steps = _step(teacher, optimizer, x, target)
    _assert_each_copy_steps_as_its_unit(teacher, student, t_steps, s_steps)


def test_fan_in_gradients_are_divided_by_the_copies_fan_out_unchanged(float64):
    """The derivation behind every rule, on Dense + BatchNorm: the copies'
    fan-in weights (fc1 columns, bn1 gamma/beta) see g / copies, the
    consumer's rows (fc2) see g; untouched weights see g."""
    teacher = factories.randomize_state(factories.mlp())
    student = n2n.expand_model(teacher, widen={"fc1": 24}, seed=0)
    x, target = _batch(teacher)
    t_grads = {id(v): np.asarray(g) for g, v in zip(*_gradients(teacher, x, target))}
    s_grads = {id(v): np.asarray(g) for g, v in zip(*_gradients(student, x, target))}
    seen = set()
    for old, new, transforms in optimizer_state.weight_map(student):
        if not new.trainable:
            continue
        expected = t_grads[id(old)]
        for axis, src, counts, divides in transforms:
            expected = np.take(expected, src, axis=axis)
            if divides is Mode.COPY:
                shape = [1] * expected.ndim
                shape[axis] = -1
                expected = expected / counts[src].reshape(shape)
        np.testing.assert_allclose(s_grads[id(new)], expected, rtol=1e-9, atol=1e-14)
        seen.add((new.path.split("/")[0], tuple(t[3] is Mode.DIVIDE for t in transforms)))
    assert {("fc1", (False,)), ("bn1", (False,)), ("fc2", (True,)), ("logits", ())} <= seen


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_moves_the_students_function_as_the_teachers(float64, nesterov):
    """SGD velocity is carried like the weights (copied on fan-in axes,
    divided on fan-out rows): a momentum-only step (learning rate 0) keeps
    the student computing what the teacher computes after its step."""
    optimizer = keras.optimizers.SGD(1e-2, momentum=0.9, nesterov=nesterov)
    teacher = _teacher(encoder, optimizer)
    optimizer.learning_rate = 0.0
    student, new = _grow_and_carry(teacher, optimizer, dict(widen=MHA_WIDEN))
    x, target = _batch(teacher, seed=5)
    _step(student, new, x, target)
    moved = max(float(np.max(np.abs(d))) for _, d, _ in
                _step(teacher, optimizer, x, target).values())
    assert moved > 1e-4  # the momentum does move the weights
    assert_preserved(teacher, student, x, rtol=1e-7)


def test_sgd_gradient_part_follows_the_documented_rule(float64):
    """With a learning rate, a fan-in copy's SGD step is lr * g / copies and a
    fan-out row's lr * g (documented: not scale-invariant)."""
    optimizer = keras.optimizers.SGD(1e-2, momentum=0.9)
    teacher = _teacher(factories.mlp, optimizer)
    student, new = _grow_and_carry(teacher, optimizer, dict(widen={"fc1": 24}))
    slots = {id(v): np.asarray(s.numpy()) for v, s in
             zip(new._trainable_variables, new.momentums)}
    x, target = _batch(teacher, seed=5)
    s_steps = _step(student, new, x, target)
    lr = float(new.learning_rate)
    for _, var, _ in optimizer_state.weight_map(student):
        if var.trainable:
            _, delta, grad = s_steps[id(var)]
            expected = 0.9 * slots[id(var)] - lr * grad
            np.testing.assert_allclose(delta, expected, rtol=0,
                                       atol=1e-6 * np.max(np.abs(expected)))


def test_untouched_slots_equal_the_teachers_and_schedule_continues():
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 2, 0.5)
    optimizer = keras.optimizers.Adam(schedule)
    teacher = _teacher(factories.mlp, optimizer)
    student, new = _grow_and_carry(teacher, optimizer, dict(widen={"fc1": 24}))
    assert int(new.iterations.numpy()) == 3
    np.testing.assert_allclose(float(new.learning_rate), float(optimizer.learning_rate))
    assert float(new.learning_rate) < 1e-2  # the schedule did move
    for layer in ("logits", "prelu"):
        for old, var in zip(teacher.get_layer(layer).trainable_variables,
                            student.get_layer(layer).trainable_variables):
            for slots, new_slots in ((optimizer._momentums, new._momentums),
                                     (optimizer._velocities, new._velocities)):
                a = slots[optimizer._get_variable_index(old)].numpy()
                b = new_slots[new._get_variable_index(var)].numpy()
                assert np.any(a != 0)
                np.testing.assert_array_equal(a, b)


# -- inserted layers ----------------------------------------------------------------
@pytest.mark.parametrize("new_variables", ["warm", "fresh"])
def test_inserted_layers_slots(float64, new_variables):
    """First moments start at zero; "warm" second moments at the mean of the
    anchor's slot of the same weight name (else the mean over the anchor's
    weights), "fresh" at zero."""
    optimizer = keras.optimizers.Adam(1e-2)
    teacher = _teacher(factories.mlp, optimizer)
    student, new = _grow_and_carry(teacher, optimizer, dict(widen={"fc1": 24}, deepen=["fc1"]),
                                   new_variables=new_variables)
    inserted = [l for l in student.layers if l.name.startswith("fc1_deepen")]
    assert inserted and all(l.trainable_variables for l in inserted)
    anchor = {v.path.rsplit("/", 1)[-1]: v for v in student.get_layer("fc1").trainable_variables}
    for layer in inserted:
        for var in layer.trainable_variables:
            i = new._get_variable_index(var)
            np.testing.assert_array_equal(new._momentums[i].numpy(), 0.0)
            v = new._velocities[i].numpy()
            if new_variables == "fresh":
                np.testing.assert_array_equal(v, 0.0)
                continue
            means = {name: np.mean(new._velocities[new._get_variable_index(a)].numpy())
                     for name, a in anchor.items()}
            name = var.path.rsplit("/", 1)[-1]
            expected = means.get(name, np.mean(list(means.values())))
            assert expected > 0
            np.testing.assert_allclose(v, expected, rtol=1e-12)


def test_warm_second_moments_keep_inserted_layers_from_jumping(float64):
    """After 1000 steps Keras' global bias correction makes a zero-slot
    variable's first update sqrt(1 - beta_2**t) / (1 - beta_1**t) *
    (1 - beta_1) / sqrt(1 - beta_2) = 2.5 learning rates (t = 1001, 3.16 for
    large t) whatever its gradient; warm second moments make every inserted
    element's step smaller."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12))
    y = x[:, :3] * 2.0 + 0.1 * rng.normal(size=(64, 3))
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)
    steps = {}
    for new_variables in ("fresh", "warm"):
        keras.utils.set_random_seed(0)
        teacher = factories.randomize_state(factories.mlp())
        optimizer = keras.optimizers.Adam(1e-3, epsilon=EPS)
        teacher.compile(optimizer=optimizer, loss="mse")
        teacher.fit(data, steps_per_epoch=1000, epochs=1, verbose=0, shuffle=False)
        student, new = _grow_and_carry(teacher, optimizer, dict(deepen=["fc1"]),
                                       new_variables=new_variables)
        s_steps = _step(student, new, [x[:16]], y[:16])
        kernel = [l for l in student.layers if l.name.startswith("fc1_deepen")][0].kernel
        steps[new_variables] = np.abs(s_steps[id(kernel)][1])
    moving = steps["fresh"] > 0
    jump = np.sqrt(1 - 0.999 ** 1001) / (1 - 0.9 ** 1001) * 0.1 / np.sqrt(1e-3)
    np.testing.assert_allclose(steps["fresh"][moving], 1e-3 * jump, rtol=1e-5)
    assert np.all(steps["warm"] <= steps["fresh"] * (1 + 1e-9))
    print("inserted kernel step / lr: fresh", steps["fresh"].max() / 1e-3,
          "warm max", steps["warm"].max() / 1e-3, "warm median",
          np.median(steps["warm"][moving]) / 1e-3)
    assert steps["warm"].max() < 0.5 * steps["fresh"].max()


def test_pads_of_a_norm_fed_stream_start_without_history(float64):
    """A LayerNorm-fed stream grown 8 -> 12 gets 4 pads (LEMON): their first
    moments start at zero, their second moments at the mean over the copies
    along the padded axis; the copies follow the rules."""
    optimizer = keras.optimizers.Adam(1e-2)
    teacher = _teacher(encoder, optimizer)
    student, new = _grow_and_carry(teacher, optimizer, dict(widen={"embed": 12}))
    padded = 0
    for old, var, transforms in optimizer_state.weight_map(student):
        if not var.trainable:
            continue
        i = new._get_variable_index(var)
        m, v = new._momentums[i].numpy(), new._velocities[i].numpy()
        for axis, src, _, _ in transforms:
            pads = np.asarray(src) < 0
            if not pads.any():
                continue
            padded += 1
            np.testing.assert_array_equal(np.compress(pads, m, axis=axis), 0.0)
            means = np.mean(np.compress(~pads, v, axis=axis), axis=axis, keepdims=True)
            np.testing.assert_allclose(np.compress(pads, v, axis=axis),
                                       np.broadcast_to(means, np.compress(pads, v, axis).shape),
                                       rtol=1e-12)
    assert padded >= 5


# -- wrappers, chains -------------------------------------------------------------
def test_loss_scale_optimizer_wraps_through():
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2))
    teacher = _teacher(factories.mlp, optimizer)
    optimizer.dynamic_scale.assign(1024.0)
    optimizer.step_counter.assign(7)
    student, new = _grow_and_carry(teacher, optimizer, dict(widen={"fc1": 24}))
    assert isinstance(new, keras.optimizers.LossScaleOptimizer)
    assert type(new.inner_optimizer) is keras.optimizers.Adam
    assert float(new.dynamic_scale.numpy()) == 1024.0 and int(new.step_counter.numpy()) == 7
    inner, new_inner = optimizer.inner_optimizer, new.inner_optimizer
    old = teacher.get_layer("logits").kernel
    var = student.get_layer("logits").kernel
    np.testing.assert_array_equal(inner._velocities[inner._get_variable_index(old)].numpy(),
                                  new_inner._velocities[new_inner._get_variable_index(var)].numpy())
    assert int(new_inner.iterations.numpy()) == int(inner.iterations.numpy()) == 3


def test_a_student_grown_again_carries_again(float64):
    optimizer = keras.optimizers.Adam(1e-2, epsilon=EPS)
    teacher = _teacher(factories.mlp, optimizer)
    student, new = _grow_and_carry(teacher, optimizer, dict(widen={"fc1": 20}))
    _train(student, new, steps=2)
    grandchild, newer = _grow_and_carry(student, new, dict(widen={"fc1": 30}, deepen=["fc2"]))
    assert int(newer.iterations.numpy()) == 5
    x, target = _batch(teacher, seed=5)
    s_steps = _step(grandchild, newer, x, target)
    t_steps = _step(student, new, x, target)
    _assert_each_copy_steps_as_its_unit(student, grandchild, t_steps, s_steps)


def test_unbuilt_optimizer_gives_a_fresh_built_one():
    teacher = factories.randomize_state(factories.mlp())
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    new = n2n.expand_optimizer(keras.optimizers.Adam(1e-3), student)
    assert new.built and int(new.iterations.numpy()) == 0
    assert len(new._momentums) == len(student.trainable_variables)


# -- bad input --------------------------------------------------------------------
def _refused(optimizer, student, fragments, **kwargs):
    with pytest.raises(errors.PlanError) as info:
        n2n.expand_optimizer(optimizer, student, **kwargs)
    message = str(info.value)
    assert message.startswith("Expected"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_bad_inputs_are_typed_errors():
    optimizer = keras.optimizers.Adam(1e-2)
    teacher = _teacher(factories.mlp, optimizer)
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    other = factories.mlp()
    _refused(optimizer, other, ["student=", "expand_model", "Fix:"])
    foreign = keras.optimizers.Adam(1e-2, name="foreign")
    foreign.build(other.trainable_variables)
    _refused(foreign, student, ["optimizer='foreign'", "0 of the teacher's", "Fix:"])
    for cls in (keras.optimizers.Adafactor, keras.optimizers.Ftrl, keras.optimizers.Muon):
        bad = cls(name="odd")
        bad.build(teacher.trainable_variables)
        _refused(bad, student, ["optimizer='odd'", cls.__name__, "Fix:"])
    _refused(optimizer, student, ["new_variables='hot'", "Fix:"], new_variables="hot")
    _refused("adam", student, ["optimizer='adam'", "Fix:"])


def test_subclass_with_its_own_update_is_refused():
    class MyAdam(keras.optimizers.Adam):
        def update_step(self, gradient, variable, learning_rate):
            return super().update_step(2 * gradient, variable, learning_rate)

    class SameAdam(keras.optimizers.Adam):
        pass

    teacher = factories.randomize_state(factories.mlp())
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    mine = MyAdam(name="mine")
    mine.build(teacher.trainable_variables)
    _refused(mine, student, ["MyAdam"])
    same = SameAdam()
    same.build(teacher.trainable_variables)
    assert type(n2n.expand_optimizer(same, student)) is SameAdam


# -- a norm tied to a reverse embedding (Mode.NORM_SCALE_DIVIDED) ------------------
def tied_lm():
    """A tied ReversibleEmbedding whose reverse call reads a final LayerNorm:
    growing the width divides that norm's scale and shift by the copy counts
    (rules.composite), so its gradient is the teacher's, not g / copies."""
    tokens = keras.Input((6,), dtype="int32")
    embed = L.ReversibleEmbedding(20, 8, name="embed")
    x = embed(tokens)
    h = L.Dense(12, activation="gelu", name="ffn_up")(x)
    x = L.Add()([x, L.Dense(8, name="ffn_down")(h)])
    x = L.LayerNormalization(name="final_ln")(x)
    return keras.Model(tokens, embed(x, reverse=True))


TIED = dict(widen={"embed": 16, "ffn_up": 20})


def test_tied_norm_is_divided_and_its_slots_follow_the_division(float64):
    student = n2n.expand_model(factories.randomize_state(tied_lm()), seed=0, **TIED)
    modes = {new.path: [t[3] for t in transforms]
             for _, new, transforms in optimizer_state.weight_map(student)}
    assert modes["final_ln/gamma"] == [Mode.NORM_SCALE_DIVIDED]
    assert modes["final_ln/beta"] == [Mode.NORM_SHIFT_DIVIDED]


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_through_a_tied_norm_moves_the_function_as_the_teachers(float64,
                                                                             nesterov):
    """Velocity in weight units follows the weight's own transform: the tied
    norm's scale and shift are divided by the copies, so are their
    velocities (a plain copy would move the logits `copies` times too far)."""
    optimizer = keras.optimizers.SGD(1e-2, momentum=0.9, nesterov=nesterov)
    teacher = _teacher(tied_lm, optimizer)
    optimizer.learning_rate = 0.0
    student, new = _grow_and_carry(teacher, optimizer, TIED)
    x, target = _batch(teacher, seed=5)
    _step(student, new, x, target)
    moved = _step(teacher, optimizer, x, target)
    ln = teacher.get_layer("final_ln")
    assert max(float(np.max(np.abs(moved[id(v)][1]))) for v in ln.weights) > 1e-4
    assert_preserved(teacher, student, x, rtol=1e-7)


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_through_a_tied_norm_moves_every_copy_as_the_teachers_unit(float64, kind):
    """The tied norm's gradient is the teacher's at every copy (its output is
    read by the embedding's copied, undivided columns): its moments are
    copied, not divided, and every copy steps as its unit."""
    make = {"adam": lambda: keras.optimizers.Adam(1e-2, epsilon=EPS),
            "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1, epsilon=EPS)}[kind]
    optimizer = make()
    teacher = _teacher(tied_lm, optimizer)
    student, new = _grow_and_carry(teacher, optimizer, TIED)
    x, target = _batch(teacher, seed=5)
    s_steps = _step(student, new, x, target)
    t_steps = _step(teacher, optimizer, x, target)
    decay = 1e-2 * 0.1 if kind == "adamw" else 0.0
    ln = {id(v) for v in student.get_layer("final_ln").weights}
    for old, var, transforms in optimizer_state.weight_map(student):
        if id(var) in ln:  # the gradient itself: the teacher's, gathered
            np.testing.assert_allclose(s_steps[id(var)][2],
                                       _gather(t_steps[id(old)][2], transforms), rtol=1e-9)
    _assert_each_copy_steps_as_its_unit(teacher, student, t_steps, s_steps, decay)
