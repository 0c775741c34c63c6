"""The keras_hub families: how each backbone class grows, and their registry.

A family module (gpt2.py, llama.py, ...) declares `FAMILIES` (and a `TABLE`
of layer rules); `keras_net2net.hub.activate` registers them here, and the
growth driver (`hub.backbone`) looks them up. Family modules import this
module and the driver's helpers; neither imports a family module.
"""

import dataclasses
import math

from keras_net2net import errors

_FAMILIES = {}


@dataclasses.dataclass(frozen=True)
class Family:
    """How one keras_hub backbone class grows.

    Attributes:
        backbone: the backbone class.
        embedding: the layer that produces the model width.
        block: name of the i-th block, with "{}" for i.
        keys: {"hidden", "heads", "intermediate", "layers"}: the config keys.
        also_hidden: other layers producing a group of the model width.
        tied_norm: the norm a tied token embedding's reverse call reads.
        rotary: rotary position embeddings: head dims keep their width.
        identity: "pre" (zero the `zero` weights of a copied block), "post"
            (LayerNorm hand-over, see `_post_norm_identity`), or the reason
            no identity block exists.
        zero: regexes of weight paths below a block zeroed in an inserted one.
        extra: {config key: producing layer} of other widths that grow with
            the factor (ALBERT's `embedding_dim`).
        block_names: function config -> block names, where blocks are not
            `block` formatted with 0..num_layers-1 (ALBERT's groups).
        targets: function (family, config, widen) -> targets, where the
            config does not derive the head dim as hidden // heads (Gemma).
        request: function (ctx, family, config, targets) -> the layer request.
        finish: function (ctx, plan, teacher backbone, student backbone) run
            after the weights are written (Gemma's sqrt(hidden_dim) scaling).
        append_blocks: function (task or None, student, inserts) -> a deeper
            student, where the blocks live in one container layer (ViT's
            encoder): the student is grown wider first, then rebuilt deeper.
        pairs: function (ctx, family, student, inserts) -> {id(teacher layer):
            student layer}, where layers do not pair by path (MiT's auto names).
        deepen_config: function (config, new config, inserts) editing the new
            config where it lists blocks by index (Qwen 3 MoE's dense layers).
        input_lengths: {input name: length} of inputs the probe fills longer
            than its token length (raw audio under strided convolutions).
        post_norms: a post-LN block's (attention norm, output norm)
            attributes, for the `identity="post"` hand-over.
        partial: why the model width cannot grow (FNet): the class grows
            only some widths, so it does not grow x2 into its own class.

    Example:

    ```python
    Family(keras_hub.models.GPT2Backbone, embedding="token_embedding",
           tied_norm="layer_norm", zero=(r"feedforward_output_dense/(kernel|bias)",))
    ```
    """

    backbone: type
    embedding: str
    block: str = "transformer_layer_{}"
    keys: dict = dataclasses.field(default_factory=lambda: {
        "hidden": "hidden_dim", "heads": "num_heads", "intermediate": "intermediate_dim",
        "layers": "num_layers"})
    also_hidden: tuple = ()
    tied_norm: str = None
    rotary: bool = False
    identity: str = "pre"
    zero: tuple = ()
    extra: dict = dataclasses.field(default_factory=dict)
    block_names: object = None
    targets: object = None
    request: object = None
    finish: object = None
    append_blocks: object = None
    pairs: object = None
    deepen_config: object = None
    input_lengths: dict = dataclasses.field(default_factory=dict)
    post_norms: tuple = ("_self_attention_layer_norm", "_feedforward_layer_norm")
    partial: str = None

    def blocks(self, config):
        """Names of the blocks (one per block layer, shared ones once)."""
        if self.block_names is not None:
            return self.block_names(config)
        return [self.block.format(i) for i in range(config[self.keys["layers"]])]


def register(module_families):
    """Registers families: {backbone class: Family} lookups for `family_of`.

    Args:
        module_families: an iterable of `Family`.
    """
    for family in module_families:
        _FAMILIES[family.backbone] = family


def registered():
    """{backbone class: Family} of every registered class (after
    `keras_net2net.hub.activate()`).

    Example:

    ```python
    sorted(c.__name__ for c in registered())
    ```
    """
    return dict(_FAMILIES)


def family_of(cls):
    """The Family of a backbone class: its own, else its nearest base class's
    (Llama3Backbone takes LlamaBackbone's, XLMRobertaBackbone RobertaBackbone's:
    subclasses that change presets or tokenizers, not blocks); None if none.

    Example:

    ```python
    family_of(keras_hub.models.Llama3Backbone).backbone  # LlamaBackbone
    ```
    """
    return next((_FAMILIES[c] for c in cls.__mro__ if c in _FAMILIES), None)


def is_number(x):
    """A real, finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_factor(widen):
    """Raises `PlanError` for a widening factor below 1.

    Args:
        widen: a number (see `is_number`).
    """
    if widen < 1:
        raise errors.PlanError(
            f"Expected widen >= 1: Net2WiderNet only adds units. Received: widen={widen!r}. "
            f"Fix: pass a factor such as 1.5 or 2.0.")
