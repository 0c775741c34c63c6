"""BART: one token embedding shared by a post-LN TransformerEncoder stack and
a post-LN TransformerDecoder stack with cross attention (keras_net2net.hub.
seq2seq), position embeddings and an embeddings LayerNorm per stack.

Widths: `hidden_dim` (both streams: one group, since the token embedding
writes both), `num_heads` (head dim kept), `intermediate_dim`. Post-LN blocks
normalise x + f(x): the stream cannot take pads, so `hidden_dim` grows by
whole multiples (heads and `intermediate_dim` by any amount).

Deeper: refused. A post-LN identity block hands its anchor's output norm
over (keras_net2net.hub.backbone._post_norm_identity) and renormalises an
already normalised stream, which is exact to epsilon / variance only; BART
fixes epsilon at 1e-5, so an inserted block would move every output by up to
about 1e-5 / variance, more than float32 rounding.

Example:

```python
bart = keras_hub.models.BartBackbone(vocabulary_size=50, num_layers=2, num_heads=2,
                                     hidden_dim=16, intermediate_dim=32,
                                     max_sequence_length=16)
n2n.expand_model(bart, widen=2.0)   # a BartBackbone, hidden_dim 32, num_heads 4
```
"""

import keras_hub
from keras_hub.src.layers.modeling import transformer_decoder as _td

from keras_net2net.hub import seq2seq
from keras_net2net.hub.families import Family

TABLE = {_td.TransformerDecoder: seq2seq.CrossAttentionDecoderRule("self_attention")}

FAMILIES = [Family(
    keras_hub.models.BartBackbone, embedding="token_embedding",
    block=seq2seq.ENCODER, block_names=seq2seq.two_stacks,
    identity=("its post-LN blocks have no exact identity block: BART fixes the LayerNorm "
              "epsilon at 1e-5, and a handed-over norm renormalises an already normalised "
              "stream, exact only to epsilon / variance"))]
