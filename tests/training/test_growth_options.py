"""`run_comparison(growth_options=...)` reaches every growth's
`expand_model` (issue 23: the width initialisations of the savings study)."""

from keras_net2net.training import strategy as strategy_lib
from tests.training.test_schedules import _config
from tests.training.test_schedules import _mlp


def test_comparison_passes_growth_options_to_every_growth(digits_dir, monkeypatch):
    from keras_net2net.training import comparison

    calls = []
    expand_model = comparison.n2n.expand_model

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return expand_model(*args, **kwargs)

    monkeypatch.setattr(comparison.n2n, "expand_model", recording)
    report = comparison.run_comparison(
        _config(digits_dir, eval_every=0, warmup_steps=2), strategy_lib.get_strategy("default"),
        _mlp, [comparison.Arm("wider", widen=2.0)], seeds=[0], teacher_steps=10,
        budgets=[15, 20], metric="loss", time_steps=False, noise=0.5,
        growth_options={"new_units": "fresh", "split": "random"})
    grown = [c for c in calls if c.get("return_report")]
    assert grown and all(c["new_units"] == "fresh" and c["split"] == "random" for c in grown)
    assert dict(map(tuple, report["settings"]["growth_options"])) == {
        "new_units": "fresh", "split": "random"}
    assert max(report["arms"]["wider"]["max_relative_error_per_seed"]) < 1e-4
