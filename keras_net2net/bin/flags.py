"""Flags shared by the training binaries, defined in one function.

Values are checked when flags are parsed, so a bad value stops the program
before any work with absl's usage error naming the flag:

    $ net2net-train --global_batch_size=0
    FATAL Flags parsing error: flag --global_batch_size=0: ...
"""

import os

from absl import flags

from keras_net2net import choices
from keras_net2net import options as growth_options
from keras_net2net.training import config
from keras_net2net.training import schedule_options


def define_data_flags(flag_values=flags.FLAGS, default_dataset="digits",
                      dataset_help=""):
    """Defines --dataset, --data_dir and the synthetic data's shape flags.

    Args:
        flag_values: the `absl.flags.FlagValues` to define them on.
        default_dataset: the --dataset default (None: no data unless asked).
        dataset_help: a sentence to add to --dataset's help.
    """
    fv = {"flag_values": flag_values}
    defaults = config.RunConfig()
    flags.DEFINE_string(
        "dataset", default_dataset, "'digits' (scikit-learn's bundled 8x8 "
        "digits, built offline with TFDS), 'distorted_digits' (20,118/2,160 "
        "distorted 16x16 digits, built offline), 'stdlib_bytes' (byte windows "
        "of the Python stdlib's source, for --model=gpt), 'synthetic' (random "
        "images with learnable labels), or any TFDS name with image/label "
        "pairs. "
        + dataset_help, **fv)
    flags.DEFINE_string(
        "data_dir", None, "TFDS data directory; default ~/tensorflow_datasets.",
        **fv)
    flags.DEFINE_list(
        "synthetic_shape", ["8", "8", "1"],
        "Example shape for --dataset=synthetic, e.g. 32,32,3.", **fv)
    flags.DEFINE_integer(
        "synthetic_classes", defaults.synthetic_classes,
        "Number of classes for --dataset=synthetic.", lower_bound=2, **fv)
    flags.register_validator(
        "synthetic_shape", _is_shape,
        message="expected positive integers such as 8,8,1", **fv)


def data_kwargs(flag_values=flags.FLAGS):
    """Keyword arguments for `data.inputs.load_arrays` from the data flags."""
    return {"data_dir": flag_values.data_dir,
            "synthetic_shape": _shape(flag_values.synthetic_shape),
            "synthetic_classes": flag_values.synthetic_classes}


def define_shared_flags(flag_values=flags.FLAGS):
    """Defines the data, training and distribution flags.

    Args:
        flag_values: the `absl.flags.FlagValues` to define them on (tests pass a
            fresh one).
    """
    defaults = config.RunConfig()
    fv = {"flag_values": flag_values}
    flags.DEFINE_string(
        "model_dir", None, "Directory for checkpoints, TensorBoard summaries "
        "and the saved model; rerunning with the same directory resumes.", **fv)
    flags.register_validator(
        "model_dir", lambda path: path is None or _creatable_dir(path),
        message="expected a directory, or a path whose existing parent is a "
        "directory (a file stands in the way)", **fv)
    define_data_flags(flag_values)
    flags.DEFINE_integer(
        "global_batch_size", defaults.global_batch_size,
        "Examples per step summed over all replicas and workers; must be a "
        "multiple of the number of replicas.", lower_bound=1, **fv)
    flags.DEFINE_integer(
        "train_steps", None, "Step count to train to (a resumed run stops "
        f"there too). Default {config.DEFAULT_TRAIN_STEPS} unless --epochs "
        "is given.", lower_bound=1, **fv)
    flags.DEFINE_integer(
        "epochs", None, "Train for this many passes over the training split "
        "instead of --train_steps.", lower_bound=1, **fv)
    flags.DEFINE_float(
        "learning_rate", defaults.learning_rate, "Learning rate.", **fv)
    flags.DEFINE_enum(
        "optimizer", defaults.optimizer, choices.OPTIMIZERS,
        "Optimizer; 'momentum' is Nesterov SGD with momentum 0.9.", **fv)
    flags.DEFINE_enum(
        "strategy", defaults.strategy, choices.STRATEGIES,
        "Distribution strategy. 'mirrored' uses --num_gpus GPUs, or all "
        "logical CPU devices (--num_cpu_devices) without GPUs; 'multi_worker' "
        "reads the cluster from TF_CONFIG; 'tpu' connects to --tpu.", **fv)
    flags.DEFINE_integer(
        "num_gpus", defaults.num_gpus, "GPUs for one_device/mirrored.",
        lower_bound=0, **fv)
    flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.",
                        **fv)
    flags.DEFINE_integer(
        "num_cpu_devices", defaults.num_cpu_devices,
        "Split the host CPU into this many logical devices, so that mirrored "
        "training can run without GPUs.", lower_bound=1, **fv)
    flags.DEFINE_enum(
        "mixed_precision", defaults.mixed_precision, choices.PRECISIONS,
        "Keras dtype policy; mixed_float16 also scales the loss.", **fv)
    flags.DEFINE_bool(
        "jit_compile", defaults.jit_compile,
        "Compile each replica's forward and backward pass with XLA.", **fv)
    flags.DEFINE_integer(
        "log_every", defaults.log_every, "Steps between log lines and "
        "training summaries.", lower_bound=1, **fv)
    flags.DEFINE_integer(
        "eval_every", defaults.eval_every, "Steps between evaluations on the "
        "held-out split; 0 evaluates at the end only.", lower_bound=0, **fv)
    flags.DEFINE_integer(
        "eval_examples", defaults.eval_examples, "Evaluate on the first N "
        "examples of the held-out split (always the same ones); default: all. "
        "Frequent evaluations of a large split can cost more than training.",
        lower_bound=1, **fv)
    flags.DEFINE_integer(
        "checkpoint_every", defaults.checkpoint_every, "Steps between "
        "checkpoints; 0 saves at the end only.", lower_bound=0, **fv)
    flags.DEFINE_integer("seed", defaults.seed,
                         "Seed for weights and data order.", **fv)
    define_schedule_flags(flag_values)

    flags.register_validator(
        "learning_rate", lambda value: value > 0,
        message="expected a learning rate > 0", **fv)
    flags.register_multi_flags_validator(
        ["train_steps", "epochs"],
        lambda values: values["train_steps"] is None or values["epochs"] is None,
        message="give at most one of --train_steps and --epochs", **fv)
    flags.register_multi_flags_validator(
        ["strategy", "tpu"],
        lambda values: values["strategy"] == "tpu" or not values["tpu"],
        message="--tpu needs --strategy=tpu", **fv)


def define_schedule_flags(flag_values=flags.FLAGS):
    """Defines --lr_schedule, --warmup_steps, --cooldown_fraction and
    --min_lr_ratio (part of the shared flags).

    Args:
        flag_values: the `FlagValues` to define them on.
    """
    fv = {"flag_values": flag_values}
    options = schedule_options
    flags.DEFINE_string(
        "lr_schedule", options.DEFAULT_SCHEDULE, "Learning-rate schedule, peaking at "
        f"--learning_rate: one of {', '.join(options.SCHEDULES)}. 'cosine' decays "
        "to --min_lr_ratio x the peak at the run's last step; 'wsd' "
        "(warmup-stable-decay) holds the peak, then decays linearly over the last "
        "--cooldown_fraction of the run. Both span --train_steps; a resumed run "
        "continues at its step.", **fv)
    flags.DEFINE_integer(
        "warmup_steps", options.DEFAULT_WARMUP_STEPS, "Steps of linear warmup "
        "from 0 to --learning_rate, with any --lr_schedule.", **fv)
    flags.DEFINE_float(
        "cooldown_fraction", options.DEFAULT_COOLDOWN_FRACTION, "With "
        "--lr_schedule=wsd: the share of the run spent in the linear cooldown, "
        "in (0, 1).", **fv)
    flags.DEFINE_float(
        "min_lr_ratio", options.DEFAULT_MIN_LR_RATIO, "With --lr_schedule=cosine "
        "or wsd: the final rate as a fraction of --learning_rate, in [0, 1].",
        **fv)
    for name in ("lr_schedule", "warmup_steps", "cooldown_fraction", "min_lr_ratio"):
        flags.register_validator(
            name, lambda value, name=name: raise_problem(
                options.schedule_problem(**{"name" if name == "lr_schedule" else name:
                                            value})), **fv)
    flags.register_multi_flags_validator(
        ["lr_schedule", "warmup_steps", "cooldown_fraction", "train_steps"],
        lambda v: v["train_steps"] is None or raise_problem(
            options.schedule_problem(
                name=v["lr_schedule"], warmup_steps=v["warmup_steps"],
                cooldown_fraction=v["cooldown_fraction"], total_steps=v["train_steps"])),
        **fv)


def raise_problem(problem):
    """A validator's verdict: True, or the problem raised with its own words
    (absl puts "flag --name=value: " before them)."""
    if problem:
        raise flags.ValidationError(problem)
    return True


def define_growth_flags(flag_values=flags.FLAGS):
    """Defines --grow_at_step with the --widen/--deepen/--noise it applies.

    Args:
        flag_values: the `FlagValues` to define them on.
    """
    fv = {"flag_values": flag_values}
    # training.growth.GrowthPlan's defaults (tests/training/test_grow_in_run.py keeps
    # them equal; importing it here would load Keras to define flags).
    defaults = {"noise": 0.5, "carry_optimizer": False, "rewarm_steps": 10}
    flags.DEFINE_list(
        "grow_at_step", None, "Grow the model inside the run at these steps "
        "(e.g. 500 or 500,1500) with --widen/--deepen; by default with the "
        "recipe benchmarks/growth_savings.py found best (balanced noise 0.5, "
        "a fresh optimizer re-warmed over 10 steps: see BUILD_NOTES.md); the "
        "grown model, its checkpoints and report go to <model_dir>/grown_<k>.", **fv)
    flags.DEFINE_string(
        "widen", None, "With --grow_at_step: a factor for every layer that can "
        "grow (1.5), or per-layer widths or factors: conv1=16,fc1=64.", **fv)
    flags.DEFINE_string(
        "deepen", None, "With --grow_at_step: layers to follow with an identity "
        "layer (conv2,fc1), or name:count / name:residual pairs; first..last:count "
        "repeats a span of residual blocks; first..last:stack copies it with its "
        "trained weights (G_stack, not exact).", **fv)
    flags.DEFINE_float(
        "noise", defaults["noise"], "With --grow_at_step: symmetry-breaking "
        "noise (balanced: the function stays exact); 0: copies start identical.",
        lower_bound=0.0, **fv)
    flags.DEFINE_bool(
        "carry_optimizer", defaults["carry_optimizer"], "With --grow_at_step: "
        "carry the optimizer's slots and step count into the grown model "
        "(keras_net2net.expand_optimizer); by default the grown model starts a "
        "fresh optimizer (and, with a schedule, a fresh one over the steps left).",
        **fv)
    flags.DEFINE_integer(
        "rewarm_steps", defaults["rewarm_steps"], "With "
        "--grow_at_step: re-warm the learning rate linearly over this many steps "
        "after each growth, from --rewarm_from x the rate; 0 continues the "
        "schedule unchanged.", **fv)
    flags.DEFINE_float(
        "rewarm_from", schedule_options.DEFAULT_REWARM_FROM, "With "
        "--rewarm_steps: the re-warmup's start as a fraction of the rate, in "
        "(0, 1].", **fv)
    for name in ("rewarm_steps", "rewarm_from"):
        flags.register_validator(
            name, lambda value, name=name: raise_problem(
                schedule_options.rewarm_problem(**{name: value})), **fv)
    flags.register_validator(
        "grow_at_step", lambda steps: steps is None or (
            bool(steps) and all(s.isdigit() and int(s) > 0 for s in steps) and
            [int(s) for s in steps] == sorted({int(s) for s in steps})),
        message="Expected ascending steps >= 1 such as 500 or 500,1500. Fix: "
        "e.g. --grow_at_step=500", **fv)
    flags.register_validator("widen", parses(parse_widen),
                             message="Expected a factor such as 1.5 or name=width "
                             "pairs such as conv1=16,fc1=64", **fv)
    flags.register_validator("deepen", parses(parse_deepen),
                             message="Expected names such as conv2,fc1 or pairs "
                             "such as fc1:2,conv2:residual", **fv)
    flags.register_multi_flags_validator(
        ["grow_at_step", "widen", "deepen"],
        lambda v: bool(v["grow_at_step"]) == bool(v["widen"] or v["deepen"]),
        message="Expected --grow_at_step together with --widen or --deepen. Fix: "
        "give both, e.g. --grow_at_step=500 --widen=2.0 (to grow between runs, "
        "use net2net-expand and --init_model)", **fv)
    flags.register_multi_flags_validator(
        ["grow_at_step", "train_steps"],
        lambda v: not v["grow_at_step"] or v["train_steps"] is None or
        max((int(s) for s in v["grow_at_step"] if s.isdigit()), default=0)
        < v["train_steps"],
        message="Expected every --grow_at_step below --train_steps. Fix: grow "
        "earlier or raise --train_steps", **fv)


def growth_plan(flag_values=flags.FLAGS):
    """A `training.growth.GrowthPlan` from the growth flags, or None."""
    from keras_net2net.training import growth

    if not flag_values.grow_at_step:
        return None
    return growth.GrowthPlan(
        steps=tuple(int(s) for s in flag_values.grow_at_step),
        widen=parse_widen(flag_values.widen), deepen=parse_deepen(flag_values.deepen),
        noise=flag_values.noise, seed=flag_values.seed,
        carry_optimizer=flag_values.carry_optimizer,
        rewarm_steps=flag_values.rewarm_steps, rewarm_from=flag_values.rewarm_from)


def run_config(flag_values=flags.FLAGS, **overrides):
    """Returns an `config.RunConfig` from parsed shared flags.

    Args:
        flag_values: parsed `FlagValues` with the shared flags defined.
        **overrides: fields to set instead of the flag values.
    """
    fields = {field: flag_values[field].value
              for field in config.RunConfig.__dataclass_fields__}
    fields["synthetic_shape"] = _shape(fields["synthetic_shape"])
    fields.update(overrides)
    return config.RunConfig(**fields)


# The option syntax lives in keras_net2net.options (one parser and formatter,
# shared with reports); the binaries read it from here.
parse_widen = growth_options.parse_widen
parse_deepen = growth_options.parse_deepen


def parses(parse):
    """A flag validator that accepts a value when `parse(value)` succeeds.

    Args:
        parse: a function raising ValueError on a bad value.

    Returns:
        A predicate for `flags.register_validator`.
    """
    def check(text):
        try:
            parse(text)
        except ValueError:
            return False
        return True
    return check


def _shape(values):
    return tuple(int(v) for v in values)


def _is_shape(values):
    try:
        return bool(values) and all(int(v) > 0 for v in values)
    except ValueError:
        return False


def _creatable_dir(path):
    """True if `path` is a directory or could be created as one."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent
    return os.path.isdir(path)
