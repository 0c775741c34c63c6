"""Whole-block deepening: copies of a span of layers, inserted after it,
that start as the identity (staged training, LEMON, bert2BERT).

A span `(first, last)` is every call on a path from the input x of `first`
to the output of `last`. It must compute x + branches through residual Adds
(the stream), optionally through an idempotent activation (ReLU) if the span
ends with it: a copy then reads that activation's output, which it leaves
unchanged. Each copy takes the student's (grown) weights of the span, except
that every branch is zeroed at its last weighted layer, so the copy computes
its input unchanged and training starts from useful features. With `noise`,
a zeroed writer's rows that read copies of a unit take noise that sums to
zero over those copies (`Rebuilder.zero_sum_noise`): still exact, and the
copies inside the block no longer get identical gradients forever.

`{(first, last): "stack"}` instead inserts one copy with the span's trained
weights, nothing zeroed (G_stack): any span that keeps its input's shape,
not function-preserving, reported as `exact: False`.

```python
gpt = build_model("gpt", (64,), 256, width=32, depth=2)
student = expand_model(gpt, deepen={("block1_ln1", "block1_res2"): 1,
                                    ("block2_ln1", "block2_res2"): 1})
# blocks: block1, block1 copy, block2, block2 copy
```
"""

import collections
import dataclasses

import keras

from keras_net2net import carry
from keras_net2net import errors
from keras_net2net import insertions
from keras_net2net import options
from keras_net2net._keras import ops_numpy
from keras_net2net.graph import TensorKey
from keras_net2net.insertions import activation_of
from keras_net2net.insertions import assign
from keras_net2net.insertions import unique_name
from keras_net2net.plan import resolve_layer
from keras_net2net.activations import IDEMPOTENT
from keras_net2net.rules import rule_for

L = keras.layers
_WRITER_KINDS = "Dense, EinsumDense, Conv*, MultiHeadAttention or a normalization layer"


@dataclasses.dataclass
class BlockInsertion(insertions.Insertion):
    """`count` copies of a span, inserted after its last layer (`after`): an
    insertion of `keras_net2net.insertions` that replays the span's calls."""

    span: str = ""  # "first..last", as the flags write it
    calls: list = dataclasses.field(default_factory=list)  # the span's Calls, in order
    source: object = None  # TensorKey of x, the span's input
    output: object = None  # TensorKey of the span's output
    writers: list = dataclasses.field(default_factory=list)  # teacher layers zeroed
    copies: list = dataclasses.field(default_factory=list)  # per copy {id(op): op}
    sources: list = dataclasses.field(default_factory=list)  # per copy [(teacher, student, copy)]
    # G_stack: the copy keeps the span's trained weights, nothing zeroed. Not
    # function-preserving: the report says exact: false and verify measures.
    stack: bool = False

    def build(self, maker):
        build_copies(self, maker.student_of, maker.graph, maker.taken)

    def apply(self, x, maker):
        return apply_copies(self, x, maker.recorded, maker.call)

    def initial_weights(self, maker):
        initial_weights(self, maker.writer_noise)

    def watched_calls(self):
        return self.calls

    def anchored_variables(self):
        """Each copied variable anchored at the teacher variable it copies,
        so that its optimizer slots start from that variable's."""
        return [([t], [c]) for sources in self.sources for teacher, _, copy in sources
                for t, c in zip(teacher.weights, copy.weights) if c.trainable]


def plan_span(ctx, key, how):
    """Checks a span request and returns its `BlockInsertion`.

    Raises:
        PlanError: the span is unknown, not connected, shares layers, changes
            shape, or is not x + branches that can be zeroed.
    """
    graph = ctx.graph
    if len(key) != 2 or not all(isinstance(n, str) for n in key):
        raise errors.PlanError(
            f"Expected a span key (first, last) of two layer names. Received: deepen key "
            f"{key!r}. Fix: e.g. deepen={{('block1_ln1', 'block1_res2'): 1}}.")
    span = options.span_text(key)
    stack = how == "stack"
    if how in ("block", "stack"):
        how = 1
    if not (isinstance(how, int) and not isinstance(how, bool) and how >= 1):
        raise errors.PlanError(
            f"Expected a positive count, 'block' or 'stack' for span {span!r}. Received: "
            f"deepen={{{key!r}: {how!r}}}. Fix: e.g. deepen={{{key!r}: 1}}.")
    first, last = (resolve_layer(graph, name, "deepen") for name in key)
    ncalls = collections.Counter(id(c.op) for c in graph.calls)
    for layer in (first, last):
        _check_called_once(graph, span, layer, ncalls)
    first_call, = graph.calls_of(first)
    inputs = list(dict.fromkeys(first_call.inputs))
    if len(inputs) != 1:
        raise errors.PlanError(
            f"Expected the first layer of span {span!r} to read one tensor, the residual "
            f"stream x. Received: {key[0]!r} ({type(first).__name__}) reads {len(inputs)}. "
            f"Fix: start the span at a layer that reads only the stream (a block's first "
            f"norm or conv).")
    source, output = inputs[0], graph.calls_of(last)[0].outputs[0]
    calls = _calls_between(graph, source, output)
    if not any(c is first_call for c in calls):
        raise errors.PlanError(
            f"Expected the last layer of span {span!r} to be reachable from the first. "
            f"Received: {key[1]!r} ({type(last).__name__}) does not read the output of "
            f"{key[0]!r} ({type(first).__name__}), directly or through other layers. Fix: "
            f"name the span as (first, last) in graph order.")
    for call in calls:
        _check_called_once(graph, span, call.op, ncalls)
    if len({id(c.owner) for c in calls}) > 1:
        raise errors.PlanError(
            f"Expected span {span!r} to lie inside one model. Received: it crosses the "
            f"boundary of a nested model. Fix: choose a span inside one model.")
    if graph.shapes[source] != graph.shapes[output]:
        raise errors.PlanError(
            f"Expected span {span!r} to keep the shape of its input, so that copies can "
            f"follow it. Received: input {graph.shapes[source]} of {key[0]!r} and output "
            f"{graph.shapes[output]} of {key[1]!r}. Fix: end the span at a residual Add "
            f"whose output has the input's shape.")
    if stack:
        # Stacking zeroes nothing, so any span that keeps its input's shape
        # can follow itself; what it computes changes (G_stack, not exact).
        note = (f"stacked: a copy of span {span} ({len(calls)} calls) with its trained "
                f"weights (G_stack); not function-preserving")
        return BlockInsertion(anchor=last, after=last, mode="stack", count=1,
                              pattern=[c.op for c in calls], activation="linear",
                              exact_activation=False, note=note, tensor=output, span=span,
                              calls=calls, source=source, output=output, stack=True)
    branches, stream = _stream(graph, calls, source, output, span, key)
    inside = {id(c) for c in calls}
    writers = []
    for add, branch in branches:
        for w in _writers(graph, (inside, stream), branch, add, span):
            if w not in writers:
                writers.append(w)
    note = (f"{how} cop{'y' if how == 1 else 'ies'} of span {span} ({len(calls)} calls); "
            f"zeroed in each: {', '.join(graph.paths[id(w)] for w in writers)}")
    return BlockInsertion(anchor=last, after=last, mode="block", count=how,
                          pattern=[c.op for c in calls], activation="linear",
                          exact_activation=True, note=note, tensor=output, span=span,
                          calls=calls, source=source, output=output, writers=writers)


def _check_called_once(graph, span, op, ncalls):
    if ncalls[id(op)] != 1:
        raise errors.PlanError(
            f"Expected every layer of span {span!r} to be called once. Received: "
            f"{graph.paths[id(op)]!r} ({type(op).__name__}) is called {ncalls[id(op)]} "
            f"times; a copy would untie the weights its calls share. Fix: choose a span "
            f"without shared layers.")


def _calls_between(graph, source, output):
    """Calls on a path from `source` to `output`, in graph order."""
    down, forward = {source}, []
    for call in graph.calls:
        if any(k in down for k in call.inputs):
            down.update(call.outputs)
            forward.append(call)
    up, span = {output}, []
    for call in reversed(forward):
        if any(k in up for k in call.outputs):
            up.update(call.inputs)
            span.append(call)
    return span[::-1]


def _is_add(call):
    return type(call.op) is L.Add or (type(call.op) is ops_numpy.Add and len(call.inputs) == 2)


def _idempotent(op):
    """The activation's name if `op` is an idempotent activation layer."""
    rule = rule_for(op)
    if rule is not None and rule.activation_layer:
        name = activation_of(op)
        return name if name in IDEMPOTENT else None
    return None


def _stream(graph, calls, source, output, span, key):
    """[(Add call, branch key)] of the stream from `source` to `output`."""
    on = {source}  # tensors a stream could pass: x, then Adds and activations of it
    for call in calls:
        if any(k in on for k in call.inputs) and (_is_add(call) or _idempotent(call.op)):
            on.update(call.outputs)
    if output not in on:
        off = [c for c in calls if any(k in on for k in c.inputs) and c.outputs[0] not in on]
        names = ", ".join(f"{c.path} ({type(c.op).__name__})" for c in off[:3]) or "other layers"
        raise errors.PlanError(
            f"Expected span {span!r} to compute x + branches through residual Adds, so that "
            f"zeroing the branches makes a copy the identity. Received: its output, of "
            f"{key[1]!r} ({type(graph.producers[output].op).__name__}), is not on a residual "
            f"stream from the input of {key[0]!r}: the input reaches it through {names}, "
            f"not Adds, and such a span is not the identity at any weights. Fix: end the "
            f"span at a block's residual Add, or deepen single layers with "
            f"deepen={{{key[1]!r}: 1}}.")
    branches, activations, chain, k = [], [], [], output
    while k != source:
        call = graph.producers[k]
        chain.append(call)
        if not _is_add(call):
            if _idempotent(call.op) != "linear":  # a linear one is the identity anywhere
                activations.append(call)
            k = call.inputs[0]
            continue
        stream = [i for i in call.inputs if i in on]
        if len(stream) != 1:
            raise errors.PlanError(
                f"Expected each residual Add of span {span!r} to add branches to one stream "
                f"tensor. Received: {call.path!r} ({type(call.op).__name__}) adds "
                f"{len(stream)} tensors of the stream, so with its branches zeroed it "
                f"computes {len(stream)}x, not x. Fix: choose a span of x + f(x) blocks.")
        branches.extend((call, i) for i in call.inputs if i not in on)
        k = stream[0]
    if not branches:
        raise errors.PlanError(
            f"Expected span {span!r} to contain a residual Add. Received: only "
            f"{', '.join(c.path for c in chain)} on its stream. Fix: deepen single layers "
            f"with deepen={{{key[1]!r}: 1}}.")
    _check_activations(activations, chain, span, key)
    return branches, on


def _check_activations(activations, chain, span, key):
    """An idempotent φ on the stream is exact in a copy only where the copy's
    input is a fixed point of φ: when the span itself ends with φ."""
    if not activations:
        return
    names = {_idempotent(c.op) for c in activations}
    if len(names) > 1:
        raise errors.PlanError(
            f"Expected the activations on the stream of span {span!r} to be one idempotent "
            f"activation. Received: {', '.join(sorted(names))} "
            f"({', '.join(c.path for c in activations)}). Fix: choose a span with one kind.")
    end = next(i for i, c in enumerate(chain) if c is activations[0])
    last_adds = [c for c in chain[:end] if _is_add(c)]  # between it and the output
    if last_adds:
        name = names.pop()
        raise errors.PlanError(
            f"Expected span {span!r}, whose stream passes through {name} "
            f"({activations[0].path!r}), to end with that {name}: a copy reads the span's "
            f"output, and only the output of {name} is left unchanged by {name}. Received: "
            f"the span ends at {key[1]!r}, after Add {last_adds[-1].path!r}. Fix: end the "
            f"span at {activations[0].path!r}.")


def _writers(graph, where_from, k, add, span):
    """The layers that write branch tensor `k` last: zeroing them zeroes it.
    `where_from` is (ids of the span's calls, the stream's tensors)."""
    inside, stream = where_from
    call = graph.producers.get(k)
    where = f"the branch into {add.path!r}"
    if k in stream:
        raise errors.PlanError(
            f"Expected {where} of span {span!r} to end in a {_WRITER_KINDS} that can be "
            f"zeroed. Received: it goes back to the stream (the output of {_name(call)}) "
            f"without passing one. Fix: choose a span whose branches end in such a "
            f"layer, or deepen single layers with deepen={{name: 'residual'}}.")
    if call is None or id(call) not in inside:
        raise errors.PlanError(
            f"Expected each residual branch of span {span!r} to be computed inside the "
            f"span. Received: {where} comes from {_name(call)}, outside it. Fix: choose a span "
            f"that holds the whole branch.")
    op = call.op
    rule = rule_for(op)
    if rule is not None and rule.zeroable:
        _check_writer(call, where, span)
        return [op]
    if _is_add(call):
        return [w for i in dict.fromkeys(call.inputs)
                for w in _writers(graph, where_from, i, add, span)]
    value = rule.value_at_zero(op) if rule is not None else None
    inputs = list(dict.fromkeys(call.inputs))
    if value is None or value != 0 or len(inputs) != 1:
        why = (f"maps 0 to {value:g}" if value is not None and value != 0 else
               "hides its computation" if isinstance(op, L.Lambda) else
               "reads several tensors" if value is not None else
               "is not known to map 0 to 0")
        raise errors.PlanError(
            f"Expected {where} of span {span!r} to end in a {_WRITER_KINDS}, followed only "
            f"by layers that map 0 to 0. Received: {call.path!r} ({type(op).__name__}) "
            f"{why}, so a zero before it would not zero the branch. Fix: end the branch "
            f"in such a layer, or deepen single layers with deepen={{name: 'residual'}}.")
    return _writers(graph, where_from, inputs[0], add, span)


def _name(call):
    return f"{call.path!r} ({type(call.op).__name__})" if call else "a model input"


def _check_writer(call, where, span):
    op = call.op
    problem = rule_for(op).zeroing_problem(op)
    if problem:
        raise errors.PlanError(
            f"Expected {where} of span {span!r} to end in a layer whose output is zero "
            f"when its weights are. Received: {call.path!r} ({type(op).__name__}) "
            f"{problem}. Fix: make the branch end in a linear layer, or deepen single "
            f"layers with deepen={{name: 'residual'}}.")


# -- building --------------------------------------------------------------------
def build_copies(ins, student_of, graph, taken):
    """Makes each copy's layers from the student's span layers' configs."""
    ins.copies, ins.layers, ins.sources = [], [], []
    for k in range(1, ins.count + 1):
        copy, layers, sources = {}, [], []
        for call in ins.calls:
            teacher = call.op
            student = student_of[id(teacher)]
            if isinstance(student, keras.layers.Layer):
                name = unique_name(f"{teacher.name}_deepen_{k}", taken)
                try:
                    new = carry.recreate(student, lambda config, name=name: {**config,
                                                                             "name": name})
                except carry.CannotRecreate as e:
                    raise carry.refusal(graph.paths[id(teacher)], teacher,
                                        "is copied into a new block", e) from e
                layers.append(new)
                sources.append((teacher, student, new))
            else:
                new = student  # a keras.ops operation: no state to copy
            copy[id(teacher)] = new
        ins.copies.append(copy)
        ins.layers.append(layers)
        ins.sources.append(sources)


def apply_copies(ins, x, tensors, call_fn):
    """Replays the span's calls, with its arguments, once per copy after x."""
    for copy in ins.copies:
        env = {ins.source: x}

        def fill(a, env=env):
            return (env[a] if a in env else tensors[a]) if isinstance(a, TensorKey) else a

        for call in ins.calls:
            args = keras.tree.map_structure(fill, call.args)
            kwargs = keras.tree.map_structure(fill, call.kwargs)
            op = copy[id(call.op)]
            # A reused keras.ops operation goes around the hooks: it is also the
            # span's own, and must not insert or record again.
            out = call_fn(op, *args, **kwargs) if isinstance(op, keras.layers.Layer) else \
                op(*args, **kwargs)
            env.update(zip(call.outputs, keras.tree.flatten(out)))
        x = env[ins.output]
    return x


def initial_weights(ins, writer_noise=None):
    """Each copy: the student's span weights, its branches' writers zeroed
    (stacked copies: nothing zeroed).

    Args:
        ins: a `BlockInsertion` whose copies are built.
        writer_noise: None, or a function of a student variable that returns
            the initial value of a zeroed copy of it (or None to keep zero):
            the symmetry-breaking noise of `Rebuilder.zero_sum_noise`.
    """
    for copy, sources in zip(ins.copies, ins.sources):
        source_of = {}  # id(copy variable) -> the student variable it copies
        for teacher, student, new in sources:
            if len(student.weights) != len(new.weights):
                raise AssertionError(f"internal: copy of {teacher.name} holds other weights")
            for a, b in zip(student.weights, new.weights):
                if tuple(a.shape) != tuple(b.shape):
                    raise AssertionError(f"internal: {b.path} {a.shape} vs {b.shape}")
                b.assign(a.numpy())
                source_of[id(b)] = a
        if ins.stack:
            continue
        for writer in ins.writers:
            for variable in _zero(copy[id(writer)]):
                value = writer_noise(source_of[id(variable)]) if writer_noise else None
                if value is not None:
                    variable.assign(value.astype(variable.dtype))


def _zero(layer):
    """Zeroes a writer's last scale; returns the variables zeroed."""
    layer, names = rule_for(layer).zeroed_weights(layer)
    assign(layer, {name: 0.0 for name in names})
    return [v for v in layer.weights if v.name in names]
