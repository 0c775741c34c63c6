"""A custom training loop on `strategy.run`.

Why not `model.fit`: it fails under `MultiWorkerMirroredStrategy` with Keras 3
(keras-team/keras#20585), and a loop of our own makes the global batch size,
loss scaling across replicas and resumable step counting explicit.

```python
strategy = get_strategy("mirrored")
train_fn, eval_fn, info = make_input_fns("digits", 64)
with strategy.scope():
    model = build_model("mlp", info.input_shape, info.num_classes)
    optimizer = keras.optimizers.Adam(1e-3)
trainer = Trainer(strategy, model, optimizer, train_fn, eval_fn, info,
                  global_batch_size=64)
iterator = trainer.train_iterator(start_step=0)
metrics = trainer.train_steps(iterator, 100)  # {"loss": ..., "accuracy": ...}
metrics = trainer.evaluate()
```
"""

import functools

import keras
import tensorflow as tf


class Trainer:
    """Runs training and evaluation steps of a classifier under a strategy.

    Sequence models (a language model's logits per position, labels per
    position) train on the mean loss over positions; their accuracy is the
    fraction of positions predicted right.

    The model and optimizer must have been created under `strategy.scope()`.
    Each replica computes the per-example cross-entropy of its share of the
    global batch and divides by the *global* batch size, so the gradients the
    optimizer sums across replicas are those of the global mean loss.

    Args:
        strategy: the `tf.distribute.Strategy` the variables belong to.
        model: a `keras.Model` from images to logits (or to probabilities, if its
            last layer ends in softmax).
        optimizer: a Keras optimizer, possibly a `LossScaleOptimizer`.
        train_fn: input function `train_fn(input_context, start_step)` yielding
            per-replica `(images, labels)`.
        eval_fn: input function yielding per-replica `(images, labels, weights)`.
        info: the `InputInfo` of the input functions.
        global_batch_size: training examples per step over all replicas.
        jit_compile: whether to compile each replica's forward and backward pass
            with XLA (the optimizer update stays outside, where tf.distribute can
            aggregate gradients).

    Raises:
        ValueError: if the global batch size does not split evenly over replicas.
    """

    def __init__(self, strategy, model, optimizer, train_fn, eval_fn, info,
                 global_batch_size, *, jit_compile=False):
        replicas = strategy.num_replicas_in_sync
        if global_batch_size % replicas:
            raise ValueError(
                f"Expected global_batch_size to be a multiple of the {replicas} "
                f"replicas. Received: global_batch_size={global_batch_size}")
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.info = info
        self.global_batch_size = global_batch_size
        self._train_fn = train_fn
        self._eval_fn = eval_fn
        self._loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=not outputs_probabilities(model), reduction=None)
        self._gradients = tf.function(self._replica_gradients,
                                      jit_compile=jit_compile)
        self._train_loop = tf.function(self._train_loop_fn)
        self.stream = None  # the training iterator last handed out
        # Batches of the stream before step 0 (a student continuing its
        # teacher's stream); read when an iterator is made, so a trainer that
        # adopts another run can take that run's offset.
        self.data_offset = 0
        self._eval_loop = tf.function(self._eval_loop_fn)
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            # Slots exist before any restore, so a checkpoint can be checked
            # variable for variable instead of being restored lazily. A built
            # optimizer (one carried through growth) keeps its state:
            # LossScaleOptimizer.build would make a new loss scale.
            if not optimizer.built:
                optimizer.build(model.trainable_variables)

    def train_iterator(self, start_step):
        """Returns a distributed iterator over the training stream.

        Args:
            start_step: batches the stream has already delivered (the restored
                step of a resumed run), so training continues where it stopped.
                A stream handed over with `continue_stream` at that step is
                continued instead.
        """
        handed = getattr(self, "_handed_stream", None)
        if handed is not None and handed[0] == start_step:
            self.stream = handed[1]
        else:
            self.stream = iter(self.strategy.distribute_datasets_from_function(
                functools.partial(self._train_fn,
                                  start_step=start_step + self.data_offset)))
        return self.stream

    def continue_stream(self, iterator):
        """Makes `train_iterator` at the current step return `iterator`, the
        stream another trainer was reading (a model grown inside the run sees
        the very batches the teacher would have seen next)."""
        self._handed_stream = (int(self.step.numpy()), iterator)

    def matches(self, model, optimizer):
        """Whether `adopt` can take `model` and `optimizer`: the same layer
        types and variable shapes as this trainer's model, and an optimizer of
        the same class and settings (the learning rate aside: it is a
        variable). `optimizer` must be built."""
        if [type(layer) for layer in model.layers] != [
                type(layer) for layer in self.model.layers]:
            return False
        if type(optimizer) is not type(self.optimizer) or (
                _settings(optimizer) != _settings(self.optimizer)):
            return False
        return (_shapes(model.variables) == _shapes(self.model.variables)
                and _shapes(optimizer.variables) == _shapes(self.optimizer.variables))

    def adopt(self, model, optimizer):
        """Trains `model` from `optimizer`'s state next, from step 0, with the
        steps this trainer has already traced (a transformer's training step
        takes seconds to trace): their values are copied into this trainer's
        own variables. Check `matches` first; `hand_back` copies the result
        back."""
        _assign(self.model.variables, model.variables)
        _assign(self.optimizer.variables, optimizer.variables)
        self.step.assign(0)
        self.stream = self._handed_stream = None

    def hand_back(self, model, optimizer):
        """Copies this trainer's variables into the `model` and `optimizer` it
        adopted."""
        _assign(model.variables, self.model.variables)
        _assign(optimizer.variables, self.optimizer.variables)

    def train_steps(self, iterator, num_steps):
        """Runs `num_steps` training steps and increments `step`.

        Args:
            iterator: from `train_iterator`.
            num_steps: int number of steps.

        Returns:
            {"loss": mean cross-entropy, "accuracy": mean accuracy} over the
            steps, as Python floats (NaN if the loss diverged).
        """
        totals = self._train_loop(iterator, tf.constant(num_steps, tf.int32))
        self.step.assign_add(num_steps)
        return _means(totals)

    def evaluate(self):
        """Returns {"loss", "accuracy"} over the whole evaluation split."""
        iterator = iter(self.strategy.distribute_datasets_from_function(
            self._eval_fn))
        return _means(self._eval_loop(iterator))

    def _replica_gradients(self, images, labels):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            per_example = _per_example(self._loss(labels, tf.cast(outputs, tf.float32)))
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=self.global_batch_size)
            if self.model.losses:
                # Every replica adds the same penalty; summed over replicas it must
                # count once.
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, variables)
        return gradients, _sums(per_example, outputs, labels)

    def _replica_train_step(self, images, labels):
        gradients, sums = self._gradients(images, labels)
        self.optimizer.apply_gradients(
            zip(gradients, self.model.trainable_variables))
        return sums

    def _replica_eval_step(self, images, labels, weights):
        outputs = self.model(images, training=False)
        per_example = _per_example(self._loss(labels, tf.cast(outputs, tf.float32)))
        return _sums(per_example, outputs, labels, weights)

    def _train_loop_fn(self, iterator, num_steps):
        totals = tf.zeros([3])
        for _ in tf.range(num_steps):
            per_replica = self.strategy.run(self._replica_train_step,
                                            args=next(iterator))
            totals += self.strategy.reduce("SUM", per_replica, axis=None)
        return totals

    def _eval_loop_fn(self, iterator):
        totals = tf.zeros([3])
        for _ in tf.range(self.info.eval_steps):
            per_replica = self.strategy.run(self._replica_eval_step,
                                            args=next(iterator))
            totals += self.strategy.reduce("SUM", per_replica, axis=None)
        return totals


def outputs_probabilities(model):
    """Whether a model's output layer ends in a softmax (else: logits).

    Args:
        model: a `keras.Model`.

    Returns:
        True if the last layer's `activation` is softmax.
    """
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", None) == "softmax"


def _sums(per_example, outputs, labels, weights=None):
    """[sum of losses, number correct, number of examples], all weighted."""
    if weights is None:
        weights = tf.ones_like(per_example)
    correct = _per_example(tf.cast(tf.equal(
        tf.argmax(outputs, axis=-1, output_type=tf.int32), tf.cast(labels, tf.int32)),
        tf.float32))
    return tf.stack([tf.reduce_sum(per_example * weights),
                     tf.reduce_sum(correct * weights), tf.reduce_sum(weights)])


def _per_example(values):
    """Means over every axis but the batch axis: a sequence model's per-token
    losses (batch, time) become one loss per sequence, so that losses,
    accuracies and weights stay per example."""
    if values.shape.rank > 1:
        return tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
    return values


def _settings(optimizer):
    config = dict(optimizer.get_config())
    config.pop("name", None)
    # A fixed rate is a variable that adopt() copies; a schedule is traced
    # into the step function, so two optimizers match only with equal ones.
    if not isinstance(config.get("learning_rate"), dict):
        config.pop("learning_rate", None)
    return config


def _shapes(variables):
    return [(tuple(v.shape), str(v.dtype)) for v in variables]


def _assign(targets, sources):
    for target, source in zip(targets, sources, strict=True):
        target.assign(source)


def _means(totals):
    loss_sum, correct, count = (float(v) for v in totals.numpy())
    count = max(count, 1.0)
    return {"loss": loss_sum / count, "accuracy": correct / count}
