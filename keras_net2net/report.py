"""The expansion report: what grew, what was kept and why, the mappings, the
inserted layers and the measured errors. JSON round-trips."""

import dataclasses
import json
import math


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
        verification: {"dtype", "tolerance", "inference": [...], "training": [...],
            "float64": [...]}: per-output rows {"output", "max_abs", "max_rel"};
            "float64" (present when the first error exceeded what rounding
            explains) compares float64 copies of the teacher and of a student
            grown from it the same way, and "float64_note" says why it could
            not run, where it could not.
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
            exact = "exact" if ins["exact"] else "linear"
            lines.append(f"inserted after {ins['anchor']} ({ins['mode']}, {exact}): "
                         f"{', '.join(ins['layers'])}" + (f" [{ins['note']}]" if ins["note"] else ""))
        v = self.verification
        for mode in ("inference", "training", "float64"):
            for r in v.get(mode, []):
                lines.append(f"{mode} {r['output']}: max|d| = {r['max_abs']:.3g}, "
                             f"max|d|/max|y| = {r['max_rel']:.3g}")
        if v.get("float64_note"):
            lines.append(f"float64 second look not run: {v['float64_note']}")
        if v:
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
