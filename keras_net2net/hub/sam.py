"""SAM: a ViTDet image encoder, a prompt encoder and a mask decoder.

The image encoder grows by ViTDet's rules (`hub/vit_det.py`: the same block
rule, targets, request and identity blocks, applied to the
`image_encoder` entry of SAM's config); its neck keeps
`num_output_channels`, the width the prompt encoder and the mask decoder
read, so both keep theirs and their weights are copied as they are. The
mask decoder is no layer of SAMBackbone's graph (SAMImageSegmenter calls
it), so `finish` copies it, built where the teacher's is.
"""

import copy

import keras_hub

from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import mit
from keras_net2net.hub import vit_det
from keras_net2net.hub.families import Family

ENCODER = vit_det.FAMILIES[0]


def _encoder(config):
    return config["image_encoder"]["config"]


def targets(family, config, widen):
    """{"image_encoder": its serialized config with ViTDet's new widths}."""
    grown = vit_det.targets(ENCODER, _encoder(config), widen)
    if grown["num_output_channels"] != _encoder(config)["num_output_channels"]:
        raise errors.PlanError(
            f"Expected SAMBackbone's image encoder to keep num_output_channels "
            f"({_encoder(config)['num_output_channels']}): its prompt encoder and mask decoder "
            f"read that width and have no growth rule. Received: widen={widen!r}. Fix: grow "
            f"hidden_size, num_heads and intermediate_dim (e.g. widen=2.0).")
    encoder = copy.deepcopy(config["image_encoder"])
    encoder["config"].update({ENCODER.keys.get(k, k): v for k, v in grown.items()})
    return {"image_encoder": encoder}


def request(ctx, family, config, targets):
    encoder = _encoder(targets)
    return vit_det.request(ctx, ENCODER, _encoder(config), {
        k: encoder[key] for k, key in ENCODER.keys.items() if k != "layers"})


def copy_mask_decoder(teacher, student):
    """The teacher's mask decoder weights into the student's (built first
    where the teacher's is: SAMImageSegmenter builds it on its first call)."""
    source, target = teacher.mask_decoder, student.mask_decoder
    if source.built and not target.built:
        target.build()  # SAMMaskDecoder builds from its config alone
    if len(source.weights) != len(target.weights):
        raise errors.UnsupportedModelError(
            f"Expected the grown {type(student).__name__}'s mask decoder to hold the teacher's "
            f"{len(source.weights)} weights. Received: {len(target.weights)}. Fix: build the "
            f"teacher's SAMImageSegmenter (call it once) and grow the segmenter.")
    for a, b in zip(source.weights, target.weights):
        lazy.set_value(b, a.numpy())


def finish(ctx, plan, teacher, student):
    copy_mask_decoder(teacher, student)


def append_blocks(task, student, inserts):
    """The widened SAM rebuilt with ViTDet identity blocks in its encoder."""
    backbone = student.backbone if task is not None else student
    config = backbone.get_config()
    config["image_encoder"]["config"] = vit_det.deeper_config(_encoder(config), inserts)
    deeper, made = hub_backbone.build_student(task, backbone, config)  # deferred
    vit_det.copy_deeper(student, deeper, inserts, vit_det.identity_block)
    copy_mask_decoder(backbone, deeper.backbone if task is not None else deeper)
    lazy.initialize_rest(deeper.variables + made)
    return deeper


FAMILIES = [Family(
    keras_hub.models.SAMBackbone, embedding=ENCODER.embedding, block=ENCODER.block,
    block_names=lambda config: vit_det.block_names(_encoder(config)), identity="pre",
    keys=ENCODER.keys, targets=targets, request=request, pairs=mit.pair_layers, finish=finish,
    append_blocks=append_blocks)]
