"""The savings study's recipe table (benchmarks/growth_savings.py) is whole:
every recipe's options are `run_comparison` arguments and its arms grow
blocks the study's teacher has, so a recipe fails here, not an hour into a run."""

import importlib.util
import inspect
import pathlib

import pytest
from absl import flags

from keras_net2net import models
from keras_net2net.training import comparison

_PATH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "growth_savings.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("growth_savings_study", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("depth", [2, 3])
def test_every_recipe_is_arguments_run_comparison_takes_and_blocks_the_teacher_has(
        study, depth):
    accepted = set(inspect.signature(comparison.run_comparison).parameters)
    teacher = models.build_model("gpt", (16,), 32, width=8, depth=depth)
    names = {layer.name for layer in teacher.layers}
    table = study.recipes(teacher_steps=100, depth=depth)
    assert "stable_0.125_deeper4" in table and len(table) >= 30
    for name, (arms, options) in table.items():
        unknown = (set(options) - {"lr_scales"}) - accepted
        assert not unknown, f"{name}: {unknown} are not run_comparison arguments"
        assert arms and all(isinstance(arm, comparison.Arm) for arm in arms), name
        for arm in arms:
            for first, last in (arm.deepen or {}):
                assert {first, last} <= names, f"{name}/{arm.name}: {first}..{last}"


def test_recipes_flag_rejects_a_name_that_is_not_a_recipe(study):
    values = flags.FlagValues()
    study.define_recipes_flag(values)
    values(["prog", "--recipes=stable_0.125,stable_0.125_deeper4"])
    assert values.recipes == ["stable_0.125", "stable_0.125_deeper4"]
    with pytest.raises(flags.IllegalFlagValueError,
                       match=r"--recipes.*no recipe is called deeper8; pick from arms"):
        values(["prog", "--recipes=stable_0.125,deeper8"])
