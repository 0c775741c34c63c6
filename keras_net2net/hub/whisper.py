"""Whisper: an audio front end (Conv1D, GELU, a time-axis `Padder`, a
strided Conv1D, GELU, a position table) into pre-LN encoder blocks and a
final LayerNorm; a token-and-position embedding into pre-LN decoder blocks
with cross attention over the encoder output (keras_net2net.hub.seq2seq),
and a final LayerNorm.

Widths: `hidden_dim` (three groups with one width: the first convolution's
filters, the encoder stream, the decoder stream; each has its own mapping,
and the cross-attention keys and values divide their rows by the encoder
stream's), `num_heads` (head dim kept), `intermediate_dim`. Pre-LN blocks
take mean pads, so non-integer factors are exact too.

Deeper: one encoder block and one decoder block (num_layers counts both),
each a copy of its anchor with its attention, cross-attention and
feed-forward output projections zero: x + 0 + 0 + 0 = x.

Example:

```python
whisper = keras_hub.models.WhisperBackbone(
    vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
    num_mels=8, max_encoder_sequence_length=32, max_decoder_sequence_length=16)
n2n.expand_model(whisper, widen=2.0,
                 deepen=["transformer_encoder_layer_1", "transformer_decoder_layer_1"])
```
"""

import keras_hub
from keras_hub.src.models.whisper import whisper_backbone
from keras_hub.src.models.whisper import whisper_decoder
from keras_hub.src.models.whisper import whisper_encoder

from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import seq2seq
from keras_net2net.hub.families import Family
from keras_net2net.rules import channelwise

# Below a block: the writers into the stream, zero in an inserted block.
ZERO = (r"self_attention(_layer)?/attention_output/(kernel|bias)",
        r"cross_attention/attention_output/(kernel|bias)",
        r"feedforward_output_dense/(kernel|bias)")

TABLE = {
    whisper_encoder.WhisperEncoder: hub_layers.TransformerBlockRule("self_attention_layer"),
    whisper_decoder.WhisperDecoder: seq2seq.CrossAttentionDecoderRule("self_attention"),
    # Zero rows on the time axis: every channel alike, so channels pass through.
    whisper_backbone.Padder: channelwise.PassThroughRule(),
}

FAMILIES = [Family(
    keras_hub.models.WhisperBackbone, embedding="decoder_token_and_position_embedding",
    also_hidden=("encoder_token_embedding_conv_layer_1", "encoder_token_embedding_conv_layer_2"),
    block=seq2seq.ENCODER, block_names=seq2seq.two_stacks, identity="pre", zero=ZERO,
    append_blocks=seq2seq.make_append_blocks(ZERO))]
