"""Same class out: a keras_hub Backbone (or a Task on one) grown into one of
its own class.

`BackboneMaker` is how the one pipeline (`keras_net2net.expand_model`,
`keras_net2net.makers`) makes the student of every registered family
(`keras_net2net.hub.families`): the backbone's graph goes through the core's
analysis (with the keras_hub rules) and plan; its config is edited (`hidden_dim`, `num_heads`,
`intermediate_dim`, `num_layers`), the student is `type(backbone).from_config`
(and the task `type(task)(backbone=..., preprocessor=...)`), and every teacher
layer's weights are rewritten into the student layer of the same path. Nothing
is built twice, so growth costs about what building the student and assigning
its weights costs.

Two things differ from a plain model:
- Epsilons are fixed by the class (GPT-2 hard-codes them), so a stream padded
  at a non-integer factor is scaled by 1 / sqrt(s) in its writers instead of
  editing epsilon (`Plan.keep_epsilon`).
- A tied token embedding's reverse call (the LM head) reads the final norm:
  that norm's scale and shift are divided by the copy counts, so the backbone's
  hidden states are the teacher's, each channel divided by its copy count, and
  the logits are exact. `readout()` gives the teacher's states back.
"""

import math
import re

import keras
import keras_hub
import numpy as np

from keras_net2net import _keras
from keras_net2net import analysis
from keras_net2net import carry
from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net import options
from keras_net2net import makers
from keras_net2net import plan as plan_lib
from keras_net2net import report as report_lib
from keras_net2net import verify as verify_lib
from keras_net2net.hub import families


def handles(model):
    """Whether `model` is a keras_hub Backbone or Task (grown by `MAKER`).

    Example:

    ```python
    handles(keras_hub.models.GPT2Backbone(**config))  # True
    ```
    """
    return isinstance(model, (keras_hub.models.Backbone, keras_hub.models.Task))


class BackboneMaker(makers.ConfigMaker):
    """Grows a keras_hub backbone, or a task on one, into one of the same
    class (`keras_net2net.expand_model` runs it for keras_hub models the
    registered families cover, `keras_net2net.hub.families`).

    Requests (`expand_model`'s `widen` and `deepen`):
        widen: None, a factor >= 1 (model width, heads and feed-forward
            width; the head dim is kept), or {config key: width or factor},
            keys "hidden_dim", "num_heads", "intermediate_dim".
        deepen: None, a block name, a list of them or {block name: count}:
            identity blocks of the same class after each.

    Raises (from `plan` and `make`):
        UnsupportedModelError: a backbone class with no family.
        PlanError: an invalid request, naming the key, the value and the fix.

    Example:

    ```python
    student = n2n.expand_model(gpt2_backbone, widen={"hidden_dim": 32, "num_heads": 4})
    ```
    """

    def handles(self, model):
        return handles(model)

    def probe(self, model):
        return probe(model)

    def plan_config(self, model, request):
        widen, deepen = request.widen, request.deepen
        task = model if isinstance(model, keras_hub.models.Task) else None
        backbone = model.backbone if task is not None else model
        family = _family(backbone)
        config = backbone.get_config()
        keys = family.keys
        targets = (family.targets or default_targets)(family, config, widen)
        inserts = block_inserts(family, config, deepen)
        if targets == {k: config[keys.get(k, k)] for k in targets} and not inserts:
            raise errors.PlanError(
                f"Expected at least one width or block to grow. Received: widen={widen!r} and "
                f"deepen={deepen!r}. Fix: e.g. widen=2.0 or "
                f"deepen=[{family.block.format(0)!r}].")
        ctx = analysis.analyze(model, grow_outputs=task is None)
        layers = (family.request or layer_request)(ctx, family, config, targets)
        widths, skipped = plan_lib.resolve_widths(ctx, layers, strict=False)
        if skipped:
            _refuse_skipped(skipped, widen, config, keys, targets, backbone, task)
        _mark_tied_norm(ctx, family, backbone, task)
        the_plan = plan_lib.Plan(ctx, widths, request.mapping, request.seed)
        the_plan.keep_epsilon = True
        new_config = targets_config(family, config, targets)
        appended = family.append_blocks is not None
        if not appended:  # else append_blocks edits it (Swin's `depths` is a tuple)
            new_config[keys["layers"]] = config[keys["layers"]] + sum(inserts.values())
        if family.deepen_config is not None and inserts and not appended:
            family.deepen_config(config, new_config, inserts)
        return makers.Growth(model, request, ctx, the_plan, state=dict(
            task=task, backbone=backbone, family=family, config=config,
            new_config=new_config, inserts=inserts, blocks=inserts,
            grown_outputs=task is None))

    def make(self, growth):
        state, ctx, the_plan = growth.state, growth.ctx, growth.plan
        task, backbone, family = state["task"], state["backbone"], state["family"]
        inserts, config = state["inserts"], state["config"]
        appended = family.append_blocks is not None
        student, made = build_student(task, backbone, state["new_config"])
        carry.check_own_variables(growth.teacher, student)  # before any write
        pairs = (family.pairs or _pairs)(ctx, family, student, {} if appended else inserts)
        makers.write_weights(growth, pairs)
        new_backbone = student.backbone if task is not None else student
        if not appended:
            _insert_identities(family, new_backbone, config, inserts)
        lazy.initialize_rest(student.variables + made)  # what no teacher layer gave a value
        if family.finish is not None:
            family.finish(ctx, the_plan, backbone, new_backbone)
        if appended and inserts:
            student = family.append_blocks(task, student, inserts)
            state["new_config"] = (student.backbone if task is not None else
                                   student).get_config()
        return student


MAKER = BackboneMaker()


def _refuse_skipped(skipped, widen, config, keys, targets, backbone, task):
    what, why = skipped[0]
    factor = _factor(config, keys, targets)
    if float(factor).is_integer():  # not the factor: a layer that cannot grow
        fix = ("register a rule for the layer that keeps it with "
               "keras_net2net.register_rule" + (
                   ", or grow the backbone alone (expand_model(model.backbone, ...)) and "
                   "build a new task on it" if task is not None else ""))
    else:
        fix = (f"use an integer factor (e.g. widen={float(math.ceil(factor))}), or name "
               f"keys whose widths allow it, e.g. widen={{'{keys['hidden']}': "
               f"{2 * config[keys['hidden']]}, '{keys['intermediate']}': "
               f"{(3 * config[keys['intermediate']]) // 2}}}")
    raise errors.FrozenGroupError(
        f"Expected every width of {type(backbone).__name__} to grow exactly. Received: "
        f"widen={widen!r}, but {what!r} keeps its width: {why}. Fix: {fix}.")


def _family(backbone):
    family = families.family_of(type(backbone))
    if family is None:
        names = sorted([c.__name__ for c in families.registered()] +
                       ["EfficientNetBackbone", "MobileNetBackbone"])  # hub/cnn.py
        raise errors.UnsupportedModelError(
            f"Expected a keras_hub backbone of a class that grows into its own class "
            f"({', '.join(names)}). Received: {type(backbone).__name__} {backbone.name!r}, "
            f"which has no growth rule. Fix: use one of those classes, or grow a plain "
            f"functional copy of it (keras.Model(backbone.inputs, backbone.outputs)), whose "
            f"unknown layers keep their width.")
    if not backbone.built or _keras.inputs_struct(backbone) is None:
        raise errors.UnsupportedModelError(
            f"Expected a built keras_hub backbone. Received: {type(backbone).__name__} "
            f"{backbone.name!r}, not built. Fix: construct it with its config (or "
            f"from_preset) before growing it.")
    return family


def default_targets(family, config, widen):
    """{"hidden", "heads", "intermediate": new value} from `widen`."""
    keys = family.keys
    d, h, f = (config[keys[k]] for k in ("hidden", "heads", "intermediate"))
    # Grouped-query attention: query heads = kv heads ("heads") x r, r kept.
    r = config[keys["query_heads"]] // h if "query_heads" in keys else 1
    k = d // (h * r)
    extras = {key: config[key] for key in family.extra}
    if "query_heads" in keys:
        extras["query_heads"] = h * r
    if widen is None:
        return {"hidden": d, "heads": h, "intermediate": f, **extras}
    if families.is_number(widen):
        families.check_factor(widen)
        heads = math.ceil(h * widen - 1e-9)
        # The blocks derive the head dim as width // heads: keep it.
        return {"hidden": heads * r * k, "heads": heads,
                **({"query_heads": heads * r} if r > 1 or "query_heads" in keys else {}),
                "intermediate": math.ceil(f * widen - 1e-9),
                **{key: math.ceil(v * widen - 1e-9) for key, v in extras.items()
                   if key != "query_heads"}}
    if not isinstance(widen, dict):
        raise errors.PlanError(
            f"Expected widen to be a factor >= 1 or a dict of config keys, e.g. "
            f"{{'{keys['hidden']}': {2 * d}}}. Received: widen={widen!r} "
            f"({type(widen).__name__}).")
    names = {keys[n]: n for n in ("hidden", "heads", "intermediate")}
    names.update({key: key for key in extras if key != "query_heads"})
    out = {"hidden": d, "heads": h, "intermediate": f, **extras}
    for key, value in widen.items():
        if key not in names:
            raise errors.PlanError(
                f"Expected widen keys among {sorted(names)} for {family.backbone.__name__}. "
                f"Received: widen={{{key!r}: {value!r}}}. Fix: name one of those config keys "
                f"(layers grow with deepen=).")
        out[names[key]] = requested_width(key, value, out[names[key]])
    hk, kk = keys["hidden"], keys["heads"]
    if "heads" not in {names[x] for x in widen} and out["hidden"] != d:
        out["heads"] = out["hidden"] // (k * r) if out["hidden"] % (k * r) == 0 else h
    elif "hidden" not in {names[x] for x in widen} and out["heads"] != h:
        out["hidden"] = out["heads"] * r * k
    if "query_heads" in keys:
        out["query_heads"] = out["heads"] * r
    if out["hidden"] % (out["heads"] * r):
        divisors = [n for n in range(h, out["hidden"] + 1)
                    if out["hidden"] % (n * r) == 0 and out["hidden"] // (n * r) >= k]
        raise errors.PlanError(
            f"Expected {kk!r} to divide {hk!r} ({family.backbone.__name__} blocks use a head "
            f"dim of {hk} // {kk}). Received: {kk}={out['heads']} for {hk}={out['hidden']}. "
            f"Fix: {kk} in {divisors[:8]}, or {hk}={out['heads'] * k}.")
    new_k = out["hidden"] // (out["heads"] * r)
    if new_k < k or (family.rotary and new_k != k):
        why = ("rotary embeddings fix the frequencies of each head dim" if family.rotary
               else "Net2WiderNet only adds units")
        raise errors.PlanError(
            f"Expected a head dim ({hk} // {kk}) of {k}{' or more' if not family.rotary else ''}: "
            f"{why}. Received: {hk}={out['hidden']} and {kk}={out['heads']} (head dim "
            f"{new_k}). Fix: {kk}={out['hidden'] // k if out['hidden'] % k == 0 else '...'} "
            f"with {hk} a multiple of {k}.")
    return out


def targets_config(family, config, targets):
    """A copy of `config` with the widths `targets` (from `default_targets`
    or `family.targets`) under their config keys."""
    new_config = dict(config)
    new_config.update({family.keys.get(k, k): v for k, v in targets.items()})
    return new_config


def requested_width(key, value, old):
    """The width `widen={key: value}` asks for, from its current width `old`:
    an int is the width, a float a factor (rounded up).

    Raises:
        PlanError: `value` is no number, or asks for fewer units than `old`.

    Example:
    >>> requested_width("hidden_dim", 1.5, 16)
    24
    """
    if not families.is_number(value):
        raise errors.PlanError(
            f"Expected a width (int) or a factor (float) for {key!r}. Received: "
            f"widen={{{key!r}: {value!r}}}.")
    new = value if isinstance(value, int) else math.ceil(old * value - 1e-9)
    if new < old:
        raise errors.PlanError(
            f"Expected {key!r} >= its current value {old}: Net2WiderNet only adds units. "
            f"Received: widen={{{key!r}: {value!r}}}. Fix: ask for {old} or more.")
    return int(new)


def _factor(config, keys, targets):
    return targets["hidden"] / config[keys["hidden"]]


def block_inserts(family, config, deepen):
    """{block index: count} of identity blocks to insert after it."""
    names = family.blocks(config)
    deepen = options.block_counts(deepen, names[-1])
    if deepen and family.identity not in ("pre", "post"):
        wider = (f"widen={{'{family.keys['intermediate']}': ...}}" if family.partial
                 else "widen=2.0")
        raise errors.PlanError(
            f"Expected a backbone whose blocks admit an identity block. Received: "
            f"deepen={deepen!r} for {family.backbone.__name__}: {family.identity}. Fix: grow "
            f"it wider ({wider}), which stays exact.")
    out = {}
    for name, count in deepen.items():
        if name not in names:
            raise errors.PlanError(
                f"Expected deepen to name a block of {family.backbone.__name__} ({names}). "
                f"Received: deepen={{{name!r}: {count!r}}}. Fix: name one of those blocks.")
        out[names.index(name)] = block_count(name, count)
    return out


def layer_request(ctx, family, config, targets):
    """The per-layer widen request of the core (keras_net2net.plan)."""
    request = {family.embedding: targets["hidden"]}
    for name in family.also_hidden:
        request[name] = targets["hidden"]
    query_heads = targets.get("query_heads", targets["heads"])
    inner = {family.keys["heads"]: targets["heads"], "head_dim": targets["hidden"] // query_heads,
             "intermediate_dim": targets["intermediate"]}
    for name in family.blocks(config):
        request[name] = inner
    for key, layer in family.extra.items():
        request[layer] = targets[key]
    return request


def _mark_tied_norm(ctx, family, backbone, task):
    embedding = getattr(backbone, "token_embedding", None)
    if family.tied_norm is None or not getattr(embedding, "tie_weights", False):
        return
    for layer_id, layer in ctx.graph.layers.items():
        if layer.name == family.tied_norm and layer_id in ctx.io:
            ctx.io[layer_id].extra["tied_divide"] = True


def build_student(task, backbone, new_config, task_edit=None):
    for attribute in ("tie_word_embeddings",):
        if getattr(backbone, attribute, False) and attribute not in new_config:
            raise errors.UnsupportedModelError(
                f"Expected a backbone whose config holds everything it was built with. "
                f"Received: {type(backbone).__name__} with {attribute}=True, which its "
                f"get_config() leaves out (keras_hub), so no model of its class built from a "
                f"config is tied, and a grown one would not save and load as it is. Fix: grow "
                f"an untied one ({attribute}=False), or a plain functional copy of it.")
    # Deferred (keras_net2net.lazy): the teacher's values are the first. The
    # task is made eagerly: its compile() makes an optimizer, whose variables
    # come from values, which a stateless scope refuses.
    # Detached: a config may hold the teacher's variables or structures it
    # keeps (keras_net2net.carry.detached); the student gets copies.
    student_backbone, made = makers.build_from_config(type(backbone), new_config)
    if task is None:
        return student_backbone, made
    config = carry.detached(task.get_config())
    config["backbone"] = student_backbone
    config["preprocessor"] = task.preprocessor  # reused as it is
    if task_edit is not None:  # a task's own widths (a head conv's filters)
        config = task_edit(config)
    return type(task).from_config(config), made


def block_renamer(family, inserts):
    """Teacher path -> student path: blocks after an insertion move down."""
    pattern = re.compile("(^|/)" + re.escape(family.block).replace(r"\{\}", r"(\d+)") + "(?=/|$)")

    def shifted(match):
        i = int(match.group(2))
        return match.group(1) + family.block.format(
            i + sum(c for a, c in inserts.items() if a < i))
    return lambda path: pattern.sub(shifted, path)


def _pairs(ctx, family, student, inserts):
    """{id(teacher layer): student layer} by path, blocks after an insertion
    moved down."""
    return makers.pair_by_path(ctx, student, block_renamer(family, inserts))


def _insert_identities(family, backbone, config, inserts):
    """Identity blocks after each anchor (already written at its new index)."""
    rename = block_renamer(family, inserts)
    for anchor, count in sorted(inserts.items()):
        source = backbone.get_layer(rename(family.block.format(anchor)))
        start = int(re.findall(r"\d+", source.name)[-1])
        new = [backbone.get_layer(family.block.format(start + t)) for t in range(1, count + 1)]
        for block in new:
            for a, b in zip(source.weights, block.weights):
                lazy.set_value(b, a.numpy())
        if family.identity == "pre":
            for block in new:
                for variable in block.weights:
                    below = variable.path.split(block.name + "/", 1)[-1]
                    if any(re.fullmatch(z, below) for z in family.zero):
                        variable.assign(np.zeros(variable.shape, variable.dtype))
        else:
            _post_norm_identity(family, source, new)


def _post_norm_identity(family, source, new):
    """Post-LN blocks norm(x + f(x)): with f zero, a block computes norm(x),
    which is not x. The anchor's output norm hands its scale and shift over to
    the last new block and becomes gamma=1, beta=0, so the blocks in between
    read u = normalised(z) and compute normalised(u) = u up to epsilon / var(z)
    (keras_hub's post-LN encoders use epsilon = 1e-12)."""
    def norm(block, name):
        return getattr(block, name)

    first, last = family.post_norms
    gamma, beta = (v.numpy() for v in norm(source, last).weights)
    for block in [source] + new:
        for name in (first, last):
            if block is source and name == first:
                continue
            g, b = norm(block, name).weights
            g.assign(np.ones(g.shape, g.dtype))
            b.assign(np.zeros(b.shape, b.dtype))
        if block is not source:
            for variable in block.weights:
                below = variable.path.split(block.name + "/", 1)[-1]
                if any(re.fullmatch(z, below) for z in family.zero):
                    variable.assign(np.zeros(variable.shape, variable.dtype))
    g, b = norm(new[-1], last).weights
    g.assign(gamma)
    b.assign(beta)


def probe(model, batch=2, length=8, seed=0):
    """Inputs for a keras_hub backbone or task: token ids below the
    vocabulary, all-ones padding masks, zero segment ids.

    Example:

    ```python
    x = probe(backbone)
    backbone(x)
    ```
    """
    rng = np.random.default_rng(seed)
    backbone = model.backbone if isinstance(model, keras_hub.models.Task) else model
    vocab = getattr(backbone, "vocabulary_size", None) or getattr(backbone, "vocab_size", 2)
    length = min(length, getattr(backbone, "max_sequence_length", length) or length)
    out = {}
    family = families.family_of(type(backbone))
    lengths = family.input_lengths if family is not None else {}
    for name, tensor in _inputs(model).items():
        shape = tuple(batch if i == 0 else (d or lengths.get(name, length))
                      for i, d in enumerate(tensor.shape))
        if "mask" in name:
            out[name] = np.ones(shape, "int32")
        elif "segment" in name:
            out[name] = np.zeros(shape, "int32")
        elif "positions" in name:  # a masked LM's mask positions index the sequence
            out[name] = rng.integers(0, length, size=shape).astype("int32")
        elif "int" in str(tensor.dtype):
            out[name] = rng.integers(0, vocab, size=shape).astype("int32")
        else:
            out[name] = rng.normal(size=shape).astype("float32")
    if not isinstance(_keras.inputs_struct(model), dict):  # one image input (ViT, MiT)
        values = list(out.values())
        return values[0] if len(values) == 1 else values
    return out


def _inputs(model):
    struct = _keras.inputs_struct(model)
    if isinstance(struct, dict):
        return struct
    return {t.name: t for t in keras.tree.flatten(struct)}


def readout(ctx, the_plan, key, student_value):
    """The teacher's output from a grown backbone output
    (`keras_net2net.makers.read_back`).

    Example:

    ```python
    y = readout(ctx, plan, ctx.graph.outputs[0], student(x))
    ```
    """
    return makers.read_back(ctx, the_plan, key, student_value)


def verify_student(ctx, the_plan, teacher, student, report, verify_data, tolerance, noise,
                   noise_mode, grown_outputs):
    """Verifies a grown keras_hub model as `expand_model` does
    (`keras_net2net.verify.check` with the readout of a config-made student).

    Raises:
        VerificationError: the student differs from the teacher.
    """
    report.verification = verify_lib.exactness(noise, noise_mode)
    x = verify_data if verify_data is not None else probe(teacher)
    verify_lib.check(teacher, student, report, x, ctx.graph.output_names, tolerance=tolerance,
                     readout=makers.config_readout(teacher, ctx, the_plan, grown_outputs))


def report_for(ctx, the_plan, teacher, student, config, new_config, widen, deepen, inserts):
    """The report of a grown keras_hub model (`keras_net2net.report.assemble`)."""
    return report_lib.assemble(
        ctx, the_plan, [], [], teacher, student,
        dict(widen=widen if isinstance(widen, (int, float, dict)) else None,
             deepen=deepen if isinstance(deepen, (list, dict, str)) else None),
        configs=(config, new_config), blocks=inserts)


def block_count(name, count):
    """The number of blocks `deepen={name: count}` asks for ("identity": 1),
    or a typed PlanError."""
    if count == "identity":
        count = 1
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise errors.PlanError(
            f"Expected a positive count of blocks after {name!r}. Received: "
            f"deepen={{{name!r}: {count!r}}}. Fix: e.g. deepen={{{name!r}: 1}}.")
    return count
