"""DeiT: ViT with a distillation token. A patch embedding (strided Conv2D,
class and distillation tokens, a position table) and a `DeiTEncoder`
container of pre-LN blocks `transformer_block_1..n` (LayerNorm, multi-head
attention, LayerNorm, `mlp/dense` with GELU, `output_layer/output` plus the
residual) with a final LayerNorm `ln`.

Widths grow as ViT's do (keras_net2net.hub.vit): `hidden_dim` (mean pads at
non-integer factors: the blocks are pre-LN), `num_heads` (head dim
hidden_dim // num_heads kept), `intermediate_dim`. Deeper:
`deepen=["deit_encoder"]` appends identity blocks at the encoder's end (a copy
of the last block with the attention output and `output_layer/output` zero).
`DeiTImageClassifier` reads the class token (and the distillation token) from
the backbone's output, so its heads are mixing consumers of the stream.
"""

import keras_hub
from keras_hub.src.models.deit import deit_layers

from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import vit
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


class DeiTEmbeddingRule(vit.ViTEmbeddingRule):
    """DeiTEmbeddings: patches + class and distillation tokens + positions."""

    specs = {"class_token": [(2, OUT, COPY, MEAN_FILL)],
             "distillation_token": [(2, OUT, COPY, MEAN_FILL)],
             "mask_token": [(2, OUT, COPY, MEAN_FILL)],
             "patch_embedding/kernel": [(3, OUT, COPY, MEAN_FILL)],
             "patch_embedding/bias": [(0, OUT, COPY, MEAN_FILL)],
             "position_embedding": [(2, OUT, COPY, MEAN_FILL)]}


class DeiTEncoderRule(vit.ViTEncoderRule):
    """DeiTEncoder: pre-LN blocks x + mha(ln_1(x)), x + mlp(ln_2(x)), then ln."""

    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.hidden_dim // l.num_heads,
                                    on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                            config_key="intermediate_dim"),
    }
    specs = {
        **hub_layers.attention_specs(f"{_BLOCK}/mha"),
        **hub_layers.norm_specs(f"{_BLOCK}/ln_1"),
        **hub_layers.norm_specs(f"{_BLOCK}/ln_2"),
        **hub_layers.ffn_specs(f"{_BLOCK}/mlp/dense", f"{_BLOCK}/output_layer/output"),
        "ln/gamma": [(0, IN, NORM_SCALE)],
        "ln/beta": [(0, IN, COPY, ZERO_FILL)],
    }


ZERO = (r"mha/attention_output/(kernel|bias)", r"output_layer/output/(kernel|bias)")

TABLE = {deit_layers.DeiTEmbeddings: DeiTEmbeddingRule(),
         deit_layers.DeiTEncoder: DeiTEncoderRule()}

FAMILIES = [Family(
    keras_hub.models.DeiTBackbone, embedding="deit_patching_and_embedding",
    block="transformer_block_{}", block_names=lambda config: ["deit_encoder"],
    identity="pre", zero=ZERO, append_blocks=vit.block_appender("transformer_block", ZERO))]
