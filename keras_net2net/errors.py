"""Typed errors. Every message names the layer (or option), says what was
expected, what was received, and how to fix it, in Keras' own form."""


class Net2NetError(ValueError):
    """Base class of every error keras-net2net raises on user input."""


class UnsupportedModelError(Net2NetError):
    """The model cannot be read as a graph (subclassed, not built, ...)."""


class PlanError(Net2NetError):
    """A widen/deepen request is invalid for this model."""


class FrozenGroupError(PlanError):
    """`strict=True` and a requested width cannot be applied exactly."""


class VerificationError(Net2NetError):
    """The student does not reproduce the teacher within tolerance."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report
