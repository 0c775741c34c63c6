"""Input data: the bundled digits TFDS builder and distributed input pipelines.

Public names are imported on first use (TensorFlow loads with them).
"""

from typing import TYPE_CHECKING

from keras_net2net import _lazy_exports

__getattr__, __dir__ = _lazy_exports.attach(__name__, {
    "InputInfo": "keras_net2net.data.inputs:InputInfo",
    "make_input_fns": "keras_net2net.data.inputs:make_input_fns",
})

if TYPE_CHECKING:
    from keras_net2net.data.inputs import InputInfo
    from keras_net2net.data.inputs import make_input_fns
