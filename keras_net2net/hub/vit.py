"""ViT: a patch embedding (a strided Conv2D, a class token and a position
table) and a `ViTEncoder` container of pre-LN blocks (LayerNorm, multi-head
attention, LayerNorm, a two-Dense MLP) with a final LayerNorm.

Widths: `hidden_dim` (the stream, mean-padded at non-integer factors: the
blocks are pre-LN), `num_heads` (head dim = hidden_dim // num_heads, kept by
default), `mlp_dim`. One rule owns the whole encoder: every block shares
one head mapping and one MLP mapping (they grow to the same config values).
The backbone output is the final LayerNorm's: the teacher's at each first
copy (its pads are zero).

Deeper: the blocks live in one container, so `deepen=["vit_encoder"]` adds
identity blocks at its end (a copy of the last block with the attention
output and `dense_2` projections zero: x + 0 + 0 = x), by rebuilding the
widened student with more layers (`_append_blocks`).
"""

import re

import keras_hub
import numpy as np
from keras_hub.src.models.vit import vit_layers

from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import ZERO_FILL

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
_BLOCK = r"transformer_block_\d+"


class ViTEmbeddingRule(composite.CompositeRule):
    """ViTPatchingAndEmbedding: patches (Conv2D) + class token + positions,
    a producer of the model width (`hidden_dim`)."""

    residual = False
    width_key = "hidden_dim"
    specs = {"class_token": [(2, OUT, COPY, MEAN_FILL)],
             "patch_embedding/kernel": [(3, OUT, COPY, MEAN_FILL)],
             "patch_embedding/bias": [(0, OUT, COPY, MEAN_FILL)],
             "position_embedding/embeddings": [(1, OUT, COPY, MEAN_FILL)]}

    def refuse(self, layer):
        if layer.data_format != "channels_last":
            return "its patches are channels_first; it keeps its width"
        return None


class ViTEncoderRule(composite.CompositeRule):
    """ViTEncoder: pre-LN blocks x + mha(ln_1(x)), x + mlp(ln_2(x)), then ln."""

    norms = True
    epsilon_key = "layer_norm_epsilon"
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.hidden_dim // l.num_heads,
                                    on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.mlp_dim, config_key="mlp_dim"),
    }
    specs = {
        **hub_layers.attention_specs(f"{_BLOCK}/mha"),
        **hub_layers.norm_specs(f"{_BLOCK}/ln_1"),
        **hub_layers.norm_specs(f"{_BLOCK}/ln_2"),
        **hub_layers.ffn_specs(f"{_BLOCK}/mlp/dense_1", f"{_BLOCK}/mlp/dense_2"),
        "ln/gamma": [(0, IN, NORM_SCALE)],
        "ln/beta": [(0, IN, COPY, ZERO_FILL)],
    }

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        if io.layouts.get(IN) is not None:
            config["hidden_dim"] = plan.width(io.layouts[IN])
        return config


ZERO = (r"mha/attention_output/(kernel|bias)", r"mlp/dense_2/(kernel|bias)")


def block_appender(block, zero, first=1):
    """An `append_blocks` for encoders whose blocks live in one container
    layer as `{block}_{i}` (i from `first`): the widened student rebuilt with
    more blocks at the encoder's end, every weight copied by path, a new block
    a copy of the last one with the weights matching `zero` (regexes below
    the block) zero, so that it computes x + 0 + 0 = x.

    Example:

    ```python
    Family(..., append_blocks=block_appender("transformer_block", ZERO))
    ```
    """
    pattern = re.compile(rf"(.*/{block}_)(\d+)/(.*)")

    def append(task, student, inserts):
        from keras_net2net.hub import backbone as hub_backbone

        backbone = student.backbone if task is not None else student
        config = backbone.get_config()
        n = config["num_layers"]
        config["num_layers"] = n + sum(inserts.values())
        deeper, made = hub_backbone.build_student(task, backbone, config)  # deferred
        source = {v.path: v for v in student.weights}
        for variable in deeper.weights:
            old = source.get(variable.path)
            if old is not None:
                lazy.set_value(variable, old.numpy())
                continue
            match = pattern.fullmatch(variable.path)
            if match is None or int(match.group(2)) < first + n:
                raise errors.UnsupportedModelError(
                    f"Expected the deeper {type(deeper).__name__} to hold the grown model's "
                    f"weights and new blocks only. Received: a weight {variable.path!r} of "
                    f"neither. This is a bug in keras-net2net's keras_hub support: please "
                    f"report it.")
            last = source[f"{match.group(1)}{first + n - 1}/{match.group(3)}"].numpy()
            if any(re.fullmatch(z, match.group(3)) for z in zero):
                last = np.zeros_like(last)
            lazy.set_value(variable, last)
        lazy.initialize_rest(deeper.variables + made)
        return deeper
    return append


_append_blocks = block_appender("transformer_block", ZERO)


TABLE = {vit_layers.ViTPatchingAndEmbedding: ViTEmbeddingRule(),
         vit_layers.ViTEncoder: ViTEncoderRule()}

FAMILIES = [Family(
    keras_hub.models.ViTBackbone, embedding="vit_patching_and_embedding",
    block="transformer_block_{}", block_names=lambda config: ["vit_encoder"], identity="pre",
    zero=ZERO, keys={"hidden": "hidden_dim", "heads": "num_heads", "intermediate": "mlp_dim",
                     "layers": "num_layers"},
    append_blocks=_append_blocks)]
