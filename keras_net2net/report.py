"""The expansion report: what grew, what was kept and why, the mappings, the
inserted layers and the measured errors. JSON round-trips."""

import dataclasses
import json
import math

from keras_net2net import plan as plan_lib
from keras_net2net.rules import registry as rules_registry


@dataclasses.dataclass
class ExpansionReport:
    """Everything `expand_model` decided and measured.

    Attributes:
        layers: [{"layer", "class", "old_width", "new_width"}] for producers.
        groups: [{"name", "members", "old_width", "new_width", "frozen",
            "reasons", "mapping", "on_request"}], one per channel group;
            widths inside a layer (attention heads, head dims) are groups
            named "layer:key", and `on_request` ones grow only when named.
        inner: [{"layer", "class", "width", "old_width", "new_width"}], the
            widths inside layers by config key (num_heads, key_dim, ...).
        skipped: [{"request", "reason"}] widths asked for and not applied.
        inserted: [{"anchor", "mode", "layers", "activation", "exact", "note"}].
        barriers: [{"layer", "class", "reason"}].
        verification: {"exact", "dtype", "tolerance", "inference": [...],
            "training": [...], "float64": [...]}: per-output rows {"output", "max_abs", "max_rel"};
            "float64" (present when the first error exceeded what rounding
            explains) compares float64 copies of the teacher and of a student
            grown from it the same way, and "float64_note" says why it could
            not run, where it could not.
            "exact" is False (with "not_exact", why) where the student is not
            meant to compute the teacher's function (additive noise, stacked
            spans): its errors are measured only.
        inlined: [{"layer", "class", "layers"}]: custom layers that grew as
            the plain Keras subgraph traced from their call (the student holds
            a nested functional model of that name instead of the custom
            class); custom layers that were not are among `barriers`, with
            the reason.
        params_before, params_after: parameter counts.
        options: the options the call was made with.
    """

    layers: list = dataclasses.field(default_factory=list)
    groups: list = dataclasses.field(default_factory=list)
    inner: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    inserted: list = dataclasses.field(default_factory=list)
    barriers: list = dataclasses.field(default_factory=list)
    verification: dict = dataclasses.field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    options: dict = dataclasses.field(default_factory=dict)
    explained: bool = False
    inlined: list = dataclasses.field(default_factory=list)

    @property
    def exact(self):
        """Whether the student is meant to compute the teacher's function
        (False for additive noise and stacked spans, G_stack)."""
        return bool(self.verification.get("exact", True))

    @property
    def max_relative_error(self):
        """Over every inference output; NaN if any output's error is NaN."""
        return nan_max(r["max_rel"] for r in self.verification.get("inference", []))

    @property
    def max_absolute_error(self):
        """Over every inference output; NaN if any output's error is NaN."""
        return nan_max(r["max_abs"] for r in self.verification.get("inference", []))

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self, path=None, indent=1):
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))

    def mappings(self):
        """{group name: mapping} to replay this growth exactly."""
        return {g["name"]: g["mapping"] for g in self.groups if g["new_width"] != g["old_width"]}

    def __str__(self):
        if self.explained:
            return self._explanation()
        lines = [f"Net2Net expansion: {self.params_before:,} -> {self.params_after:,} parameters"]
        grown = [r for r in self.layers if r["new_width"] != r["old_width"]]
        lines.append(f"widened layers ({len(grown)} of {len(self.layers)}):")
        for r in grown:
            lines.append(f"  {r['layer']:<32} {r['class']:<20} {r['old_width']:>6} -> {r['new_width']}")
        if self.inner:
            lines.append("widths inside layers:")
            lines.extend(self._inner_lines(lambda r: f"{r['old_width']} -> {r['new_width']}"))
        kept = [g for g in self.groups if g["frozen"]]
        if kept:
            lines.append(f"groups kept at their width ({len(kept)}):")
            for g in kept:
                lines.append(f"  {g['name']:<32} width {g['old_width']}: {g['reasons'][0]}")
        for s in self.skipped:
            lines.append(f"  not applied: {s['request']}: {s['reason']}")
        for ins in self.inserted:
            exact = "exact" if ins["exact"] else (
                "not exact" if ins["mode"] == "stack" else "linear")
            lines.append(f"inserted after {ins['anchor']} ({ins['mode']}, {exact}): "
                         f"{', '.join(ins['layers'])}" + (f" [{ins['note']}]" if ins["note"] else ""))
        v = self.verification
        for mode in ("inference", "training", "float64"):
            for r in v.get(mode, []):
                lines.append(f"{mode} {r['output']}: max|d| = {r['max_abs']:.3g}, "
                             f"max|d|/max|y| = {r['max_rel']:.3g}")
        if v.get("float64_note"):
            lines.append(f"float64 second look not run: {v['float64_note']}")
        if not self.exact:
            lines.append(f"not function-preserving ({v.get('not_exact')}): errors measured, "
                         f"not checked")
        elif "dtype" in v:
            lines.append(f"verified in {v.get('dtype')} with tolerance {v.get('tolerance')}")
        return "\n".join(lines)

    def _inner_lines(self, show):
        by_layer = {}
        for r in self.inner:
            by_layer.setdefault((r["layer"], r["class"]), []).append(f"{r['width']} {show(r)}")
        return [f"  {layer:<32} {cls:<20} {', '.join(parts)}"
                for (layer, cls), parts in by_layer.items()]

    def _explanation(self):
        lines = [f"Channel groups ({len(self.groups)}), {self.params_before:,} parameters:"]
        for g in self.groups:
            state = f"kept: {g['reasons'][0]}" if g["frozen"] else "can widen"
            if g.get("on_request") and not g["frozen"]:
                layer, _, key = g["name"].rpartition(":")
                state = f"can widen when named: widen={{{layer!r}: {{{key!r}: ...}}}}"
            members = ", ".join(g["members"][:6]) + (" ..." if len(g["members"]) > 6 else "")
            lines.append(f"  {g['name']:<32} width {g['old_width']:>5}  {state}")
            if members:
                lines.append(f"      couples: {members}")
        if self.inner:
            lines.append("widths inside layers (groups named layer:key above):")
            lines.extend(self._inner_lines(lambda r: str(r["old_width"])))
        for b in self.barriers:
            lines.append(f"barrier {b['layer']} ({b['class']}): {b['reason']}")
        return "\n".join(lines)


def nan_max(values):
    """max() that returns NaN when any value is NaN: Python's max skips a NaN
    that is not first (max([0.0, nan]) == 0.0), so one output's NaN error would
    pass for a perfect match."""
    values = list(values)
    if any(math.isnan(v) for v in values):
        return float("nan")
    return max(values, default=0.0)


def _group_rows(ctx, the_plan):
    groups = ctx.groups
    names = {}
    for atom, paths in groups.producers.items():
        names.setdefault(groups.find(atom), []).extend(paths)
    on_request = {groups.find(a) for a in ctx.on_request}
    rows = []
    for root in groups.roots():
        producers = names.get(root, [])
        old = groups.widths[root]
        g = the_plan.mappings[root]
        rows.append({
            "name": producers[0] if producers else f"group{root}",
            "producers": producers,
            "members": sorted(groups.members.get(root, set())),
            "old_width": old, "new_width": int(len(g)),
            "frozen": groups.is_frozen(root),
            "reasons": groups.frozen_reasons(root),
            "mapping": g.tolist() if len(g) != old else [],
            "on_request": root in on_request,
        })
    return rows


def _inner_rows(ctx, the_plan):
    """Old and new widths inside layers (attention heads, head dims), by the
    config keys that hold them."""
    rows = []
    for layer_id, io in ctx.io.items():
        layer = ctx.graph.layers.get(layer_id)
        rule = rules_registry.rule_for(layer) if layer is not None else None
        for key, role in getattr(rule, "inner_keys", {}).items():
            layout = io.layouts.get(role)
            if layout is not None:
                rows.append({"layer": ctx.graph.paths[layer_id], "class": type(layer).__name__,
                             "width": key, "old_width": int(layout.size),
                             "new_width": int(the_plan.width(layout))})
    return rows


def assemble(ctx, the_plan, insertions, skipped, teacher, student, options, *,
             configs=None, blocks=None):
    """The `ExpansionReport` of one growth, from the analysis, the plan and
    the insertions (verification is added by the caller).

    Args:
        ctx: the analysis `Context`.
        the_plan: the `plan.Plan`.
        insertions: what deepening inserted (objects with anchor, mode,
            count, layers, activation, exact_activation, note).
        skipped: [(request, reason)] of widths not applied.
        teacher: the teacher model.
        student: the student model, or None (explain_model).
        options: the call's options; only JSON values are kept.
        configs: None, or (teacher config, student config) of a student made
            from a grown config (`keras_net2net.makers.ConfigMaker`): the
            keys that changed go to `options["config"]` as [old, new].
        blocks: None, or {anchor: count} of whole blocks a config-made
            student inserted (instead of `insertions`).

    Returns:
        An `ExpansionReport`.

    Example:

    ```python
    report = assemble(ctx, plan, [], [], teacher, student, {"widen": 2.0})
    ```
    """
    groups = ctx.groups
    layers = []
    for path, (layer, atom) in plan_lib.producers(ctx).items():
        layers.append({"layer": path, "class": type(layer).__name__,
                       "old_width": groups.widths[atom],
                       "new_width": int(len(the_plan.mapping(atom)))})
    inserted = [{"anchor": i.anchor.name, "mode": i.mode, "count": i.count,
                 "layers": [l.name for block in i.layers for l in block],
                 "activation": i.activation, "exact": i.exact_activation or i.mode == "residual",
                 "note": i.note} for i in insertions]
    if blocks is not None:
        inserted += [{"anchor": k, "mode": "identity block", "layers": [], "count": c}
                     for k, c in blocks.items()]
    report = ExpansionReport(
        layers=layers, groups=_group_rows(ctx, the_plan), inner=_inner_rows(ctx, the_plan),
        skipped=[{"request": what, "reason": why} for what, why in skipped],
        inserted=inserted,
        barriers=[{"layer": p, "class": c, "reason": r} for p, c, r in ctx.barriers],
        params_before=int(teacher.count_params()),
        params_after=int(student.count_params()) if student is not None else 0,
        options={k: v for k, v in options.items() if _jsonable(v)})
    if configs is not None:
        config, new_config = configs
        report.options["config"] = {k: [config[k], new_config[k]] for k in new_config
                                    if k in config and new_config[k] != config[k]}
    return report


def _jsonable(v):
    return v is None or isinstance(v, (int, float, str, bool, list, dict))
