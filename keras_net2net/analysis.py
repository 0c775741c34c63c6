"""Walks the graph once and asks each op's rule how channels flow through it."""

from keras_net2net import _keras
from keras_net2net import padding
from keras_net2net import rules
from keras_net2net.graph import Graph
from keras_net2net.rules import sides


def analyze(model, grow_outputs=False, reasons=None, opaque_subclassed=False):
    """Builds the `Graph` of `model` and its channel groups.

    Args:
        model: a Functional or Sequential model.
        grow_outputs: let the model's outputs grow (a keras_hub backbone's
            hidden states, read through the mapping, keras_net2net.hub).
        reasons: {id(layer): why} for layers no rule knows, in place of
            the generic reason (custom layers that could not be inlined).
        opaque_subclassed: read a nested subclassed model as one call (a
            barrier) instead of refusing the model (explain_model).

    Returns:
        A `rules.Context`: per-tensor layouts, the union-find of groups with
        freeze reasons and constraints, and each layer's role layouts.
    """
    graph = Graph(model, opaque_subclassed)
    ctx = rules.Context(graph)
    for tensor, key in zip(_flat_inputs(graph.model), graph.inputs):
        rank = len(graph.shapes[key])
        ctx.fresh(key, rank - 1 if rank > 1 else None, f"input:{tensor.name}",
                  frozen=f"model input {tensor.name!r}")
    for call in graph.calls:
        rule = rules.rule_for(call.op)
        # Layouts on other axes than the one the rule reads (rules.sides).
        held, barriers = sides.before(ctx, call, rule), len(ctx.barriers)
        if rule is None:
            ctx.barrier(call, (reasons or {}).get(id(call.op)) or rules.unknown_reason(call.op))
            sides.after(ctx, call, held, barriers)
            continue
        try:
            rule.propagate(ctx, call)
        except Exception as e:  # A rule that cannot read a call keeps it as is.
            ctx.barrier(call, f"could not follow channels through it ({type(e).__name__}: {e})")
        sides.after(ctx, call, held, barriers)
        for key in call.outputs:
            ctx.layouts.setdefault(key, None)
    for name, key in zip(graph.output_names, graph.outputs):
        if grow_outputs:
            break
        for layout in sides.layouts(ctx, key):
            ctx.groups.freeze_layout(layout, f"model output {name!r}")
    ctx.pad_kinds, ctx.pad_reasons = padding.analyse(ctx)
    sides.forbid_pads(ctx)
    return ctx


def _flat_inputs(model):
    functional = _keras.functional_of(model)
    return functional.inputs
