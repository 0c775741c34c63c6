"""Every backbone class keras_hub exports has a status (benchmarks/hub_registry.py,
the full sweep and the README table): it grows into its own class, or is
refused with a typed error, or partial (some widths grow, the model width is
refused typed: FNet). Here: the static status of all of them, and a
representative subset built tiny and grown (the full --build sweep takes
minutes on two cores)."""

import pytest

from benchmarks import hub_registry
from tests.hub.helpers import keras_hub  # noqa: F401 - skips without keras_hub

SUBSET = ["GPT2Backbone", "BertBackbone", "Llama3Backbone", "MistralBackbone",
          "QwenBackbone", "FNetBackbone", "RobertaBackbone", "OPTBackbone",
          "Qwen3MoeBackbone", "T5Backbone"]


def test_every_exported_backbone_has_a_status():
    rows = hub_registry.rows()
    assert len(rows) >= 70, len(rows)
    for row in rows:
        assert row["status"] in ("grows", "partial", "refused"), row
    grows = {r["class"] for r in rows if r["status"] == "grows"}
    assert {"Llama3Backbone", "MistralBackbone", "QwenBackbone", "RobertaBackbone",
            "XLMRobertaBackbone", "ElectraBackbone", "OPTBackbone", "Phi3Backbone",
            "Qwen3Backbone", "MixtralBackbone", "QwenMoeBackbone", "Qwen3MoeBackbone",
            "GPTNeoXBackbone", "BloomBackbone", "FalconBackbone", "Gemma3Backbone",
            "SmolLM3Backbone", "SmolLMBackbone", "ESMBackbone", "ESM2Backbone",
            "DebertaV3Backbone", "GptOssBackbone", "RoformerV2Backbone", "BartBackbone",
            "T5Backbone", "WhisperBackbone", "T5GemmaBackbone", "T5Gemma2Backbone",
            "PaliGemmaBackbone", "Gemma4Backbone",
            "CLIPBackbone", "MetaCLIP2Backbone", "SigLIPBackbone"} <= grows
    table = hub_registry.table(rows)
    assert table.count("\n| ") == len(rows) and "backbone classes have a family" in table


@pytest.mark.parametrize("name", SUBSET)
def test_a_tiny_backbone_grows_exactly_or_is_refused_typed(name):
    (row,) = hub_registry.rows(build=True, only={name})
    for key in ("widen", "deepen"):
        assert "UNTYPED" not in row[key] and "TEACHER" not in row[key], row
    if row["status"] == "grows":
        assert row["widen"].startswith("exact"), row
        error = float(row["widen"].split()[1])
        assert error <= 1e-5, row
    elif row["status"] == "partial":  # FNet: the model width is refused by name
        assert row["widen"].startswith("typed: FrozenGroupError"), row
    else:
        assert row["widen"].startswith("typed: UnsupportedModelError"), row
