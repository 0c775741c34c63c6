"""Every backbone class keras_hub exports, with how it grows: a Markdown table.

Status per class, without building anything: "grows" (a family of its own or
of a base class, keras_net2net.hub) or "refused" (no growth rule: a typed
UnsupportedModelError). With --build, each class is also built tiny from a
config filled from common argument names (random weights, perturbed; no
preset is downloaded), grown x2 and one block deeper, and the result is
recorded: exact (max relative error), a typed refusal (its class and first
words), an untyped error (a bug: the script exits non-zero), or "not built"
where the generic tiny config does not fit the class.

    python benchmarks/hub_registry.py                 # static table (seconds)
    python benchmarks/hub_registry.py --build         # all classes (minutes)
    python benchmarks/hub_registry.py --build --only GPT2Backbone,Llama3Backbone

The suite runs a representative subset (tests/hub/test_registry.py); this
script is the full sweep, and what the README table is made from.
"""

import argparse
import inspect
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import keras_net2net as n2n  # noqa: E402
from keras_net2net import errors  # noqa: E402
from keras_net2net import hub  # noqa: E402

# Tiny values by argument name; classes whose arguments this does not cover
# are "not built" (their rows still say whether a rule exists).
TINY = dict(vocabulary_size=50, vocab_size=50, num_layers=2, num_hidden_layers=2,
            num_heads=2, num_query_heads=4, num_attention_heads=2, num_key_value_heads=2,
            hidden_dim=16, hidden_size=16, intermediate_dim=32, intermediate_size=32,
            max_sequence_length=16, max_position_embeddings=16, head_dim=8, embedding_dim=8,
            num_groups=1, num_inner_repetitions=1, layer_norm_epsilon=1e-6, dropout=0.0,
            image_shape=(32, 32, 3), patch_size=8, num_experts=2, top_k=1,
            moe_intermediate_dim=16, shared_expert_intermediate_dim=16, mlp_dim=32)


# Classes the generic filler cannot build, with the tiny configs their tests
# use, and the block each deepens after where its name has no "_0".
def _per_class():
    from tests.hub import test_basnet
    from tests.hub import test_cnn
    from tests.hub import test_gemma2
    from tests.hub import test_gpt_oss
    from tests.hub import test_roformer_v2
    from tests.hub import test_smollm3
    from tests.hub import test_cspnet
    from tests.hub import test_deit
    from tests.hub import test_densenet
    from tests.hub import test_depth_anything
    from tests.hub import test_dinov2
    from tests.hub import test_dinov3
    from tests.hub import test_hgnetv2
    from tests.hub import test_mobilenetv5
    from tests.hub import test_resnet
    from tests.hub import test_segmentation
    from tests.hub import test_retinanet
    from tests.hub import test_vgg
    from tests.hub import test_vision
    from tests.hub import test_xception
    from tests.hub import test_vit_det
    from tests.hub import test_swin
    from tests.hub import test_sam
    from tests.hub import test_video_prism
    from tests.hub import test_t5gemma
    from tests.hub import test_pali_gemma
    from tests.hub import test_t5gemma2
    from tests.hub import test_gemma4
    from tests.hub import dual_helpers
    from tests.hub import test_parseq
    from tests.hub import test_moonshine
    from tests.hub import test_xlnet
    from tests.hub import test_qwen3_5
    from tests.hub import test_qwen3_5_moe
    from tests.hub import test_f_net
    from tests.hub import test_rwkv7

    return {"MobileNetBackbone": (test_cnn.MOBILENET, "block_2_1"),
            "EfficientNetBackbone": (test_cnn.EFFICIENTNET, "block1a"),
            "ViTBackbone": (test_vision.VIT, "vit_encoder"),
            "MiTBackbone": (test_vision.MIT, "hierarchical_encoder_0_0"),
            "Gemma3Backbone": (test_gemma2.GEMMA3, "decoder_block_0"),
            "SmolLM3Backbone": (test_smollm3.TINY, "transformer_layer_0"),
            "SmolLMBackbone": (test_smollm3.TINY, "transformer_layer_0"),
            # Sliding windows on odd blocks: the last block deepens exactly.
            "GptOssBackbone": (test_gpt_oss.TINY, "transformer_layer_1"),
            "RoformerV2Backbone": (test_roformer_v2.TINY, "transformer_layer_0"),
            "DeiTBackbone": (test_deit.DEIT, "deit_encoder"),
            "DINOV2Backbone": (test_dinov2.DINOV2, "encoder"),
            "DINOV3Backbone": (test_dinov3.DINOV3, "encoder"),
            "ResNetBackbone": (test_resnet.BASIC, "stack1_block1"),
            "VGGBackbone": (test_vgg.VGG, "block2_conv2"),
            "DenseNetBackbone": (test_densenet.DENSENET, "stack1_block2"),
            "XceptionBackbone": (test_xception.XCEPTION, "block3_sepconv2"),
            "CSPNetBackbone": (test_cspnet.DARK, "stage_1_block_1"),
            "ViTDetBackbone": (test_vit_det.VITDET, "block_0"),
            "SwinTransformerBackbone": (test_swin.SWIN, "stage_0"),
            "SAMBackbone": (test_sam.SAM, "block_0"),
            "VideoPrismBackbone": (test_video_prism.VIDEOPRISM, "temporal_encoder"),
            # Built by a function (their image encoder is a model).
            "SegFormerBackbone": (test_segmentation.tiny_segformer, "hierarchical_encoder_0_0"),
            "DeepLabV3Backbone": (test_segmentation.tiny_deeplab, "stack1_block1"),
            "BASNetBackbone": (test_basnet.tiny_basnet, "stack3_block0"),
            "DepthAnythingBackbone": (test_depth_anything.tiny_depth_anything, "encoder"),
            "T5GemmaBackbone": (test_t5gemma.TINY, "encoder_layer_0"),
            "PaliGemmaBackbone": (test_pali_gemma.TINY, "decoder_block_1"),
            "T5Gemma2Backbone": (test_t5gemma2.TINY, "decoder_layer_0"),
            "Gemma4Backbone": (test_gemma4.TINY, "decoder_block_1"),
            # Dual encoders: a function (the config holds built towers).
            "CLIPBackbone": (dual_helpers.tiny_clip, "vision_encoder_block_0"),
            "MetaCLIP2Backbone": (dual_helpers.tiny_metaclip2, "vision_encoder_block_0"),
            "SigLIPBackbone": (dual_helpers.tiny_siglip, "vision_encoder_block_0"),
            "HGNetV2Backbone": (test_hgnetv2.HGNETV2, "stage_1_block_1"),
            "RetinaNetBackbone": (test_retinanet.retinanet_config, "stack1_block1"),
            "MobileNetV5Backbone": (test_mobilenetv5.MOBILENETV5, "universal_inverted_residual"),
            "PARSeqBackbone": (test_parseq.tiny(), "decoder"),
            "MoonshineBackbone": (test_moonshine.TINY, "decoder_block_0"),
            "XLNetBackbone": (test_xlnet.TINY, "xlnet_encoder_0"),
            "Qwen3_5Backbone": (test_qwen3_5.TINY, "transformer_layer_0"),
            "Qwen3_5MoeBackbone": (test_qwen3_5_moe.TINY, "transformer_layer_1"),
            "FNetBackbone": (test_f_net.TINY, "f_net_layer_0"),
            "RWKV7Backbone": (test_rwkv7.TINY, "rwkv_layer_1")}


def _two_stacks(cls):
    """An encoder-decoder's first encoder block and first decoder block (its
    num_layers counts both stacks: keras_net2net.hub.seq2seq), else None."""
    from keras_net2net.hub import families
    from keras_net2net.hub import seq2seq

    family = families.family_of(cls)
    if family is None or family.block_names is not seq2seq.two_stacks:
        return None
    return [seq2seq.ENCODER.format(0), seq2seq.DECODER.format(0)]


def backbone_classes():
    """Every class `keras_hub.models.*Backbone` exports, by name."""
    return {name: getattr(keras_hub.models, name) for name in sorted(dir(keras_hub.models))
            if name.endswith("Backbone") and isinstance(getattr(keras_hub.models, name), type)
            and getattr(keras_hub.models, name) is not keras_hub.models.Backbone}


def status(cls):
    """("grows", family base class name) or ("refused", why), without building."""
    hub.activate()
    from keras_net2net.hub import cnn
    from keras_net2net.hub import families

    if cls is keras_hub.models.FeaturePyramidBackbone:  # no __init__ of its own
        return "refused", "abstract base class (its subclasses build the layers)"
    family = families.family_of(cls)
    if family is not None:
        return ("partial", family.partial) if family.partial else ("grows", family.backbone.__name__)
    if cnn.handles_class(cls):
        return "grows", "hub/cnn.py"
    return "refused", "no growth rule (UnsupportedModelError)"


def tiny(cls):
    """A tiny instance from TINY (or the class's own tiny config), or None
    where a required argument is unknown."""
    if cls is keras_hub.models.FeaturePyramidBackbone:  # builds an empty model: no inputs
        return None, "abstract base class: no layers, no inputs"
    params = inspect.signature(cls.__init__).parameters
    kwargs = {}
    own = _per_class().get(cls.__name__)
    for name, p in params.items() if own is None else ():
        if name in ("self", "kwargs", "args") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if name in TINY and (p.default is inspect.Parameter.empty or name != "head_dim"):
            kwargs[name] = TINY[name]  # head_dim only where required: else derived
        elif p.default is inspect.Parameter.empty:
            return None, f"no tiny value for {name!r}"
    keras.utils.set_random_seed(0)
    try:
        # An entry is a config, or a function making a config (towers built
        # fresh) or the model itself (a composite on a built encoder).
        made = own[0]() if own is not None and callable(own[0]) else (
            own[0] if own is not None else kwargs)
        model = made if isinstance(made, keras.Model) else cls(**made)
    except Exception as e:  # noqa: BLE001 - a config the generic filler gets wrong
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(0.0, 0.2, w.shape).astype(w.dtype))
    return model, None


def grow(model, **kwargs):
    """"exact 2e-07" / "typed: PlanError: ..." / "UNTYPED: ..."; the teacher
    must be bit-identical after either."""
    before = [w.numpy().copy() for w in model.weights]
    try:
        _, report = n2n.expand_model(model, seed=0, return_report=True, **kwargs)
        out = f"exact {report.max_relative_error:.0e}"
    except errors.Net2NetError as e:
        out = f"typed: {type(e).__name__}: {str(e)[:90]}"
    except Exception as e:  # noqa: BLE001 - the bug this sweep looks for
        out = f"UNTYPED: {type(e).__name__}: {str(e)[:90]}"
    if any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights)):
        out = "TEACHER CHANGED; " + out
    return out


def rows(build=False, only=None):
    out = []
    for name, cls in backbone_classes().items():
        if only and name not in only:
            continue
        state, why = status(cls)
        row = {"class": name, "status": state, "how": why}
        if build:
            start = time.time()
            model, reason = tiny(cls)
            if model is None:
                row.update(widen="not built", deepen=reason)
            else:
                row["widen"] = grow(model, widen=2.0)
                own = _per_class().get(name)
                blocks = [own[1]] if own is not None else [
                    l.name for l in model.layers if "layer_0" in l.name or l.name.endswith("_0")]
                blocks = _two_stacks(cls) or blocks[:1]
                row["deepen"] = grow(model, deepen=blocks) if blocks else "no block found"
            row["seconds"] = round(time.time() - start, 1)
        out.append(row)
    return out


def table(rows_):
    keys = list(rows_[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows_:
        lines.append("| " + " | ".join(str(row.get(k, "")).replace("|", "/") for k in keys)
                     + " |")
    grows = sum(r["status"] == "grows" for r in rows_)
    lines.append(f"\n{grows} of {len(rows_)} backbone classes have a family (grow into their "
                 f"own class).")
    if "widen" in keys:
        built = [r for r in rows_ if r["widen"] != "not built"]
        wide = [r for r in built if r["widen"].startswith("exact")]
        deep = [r for r in wide if r["deepen"].startswith("exact")]
        lines.append(f"Built tiny: {len(built)}; x2 wider exactly: {len(wide)}; also one block "
                     f"deeper exactly: {len(deep)}.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="build tiny and grow each")
    parser.add_argument("--only", default="", help="comma-separated class names")
    args = parser.parse_args(argv)
    result = rows(args.build, set(filter(None, args.only.split(","))))
    print(table(result))
    bad = [r["class"] for r in result
           if any("UNTYPED" in str(r.get(k)) or "TEACHER" in str(r.get(k))
                  for k in ("widen", "deepen"))]
    if bad:
        print(f"\nuntyped errors or a changed teacher: {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
