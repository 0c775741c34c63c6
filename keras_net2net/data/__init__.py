"""Input data: the bundled digits TFDS builder and distributed input pipelines."""

from keras_net2net.data.inputs import InputInfo
from keras_net2net.data.inputs import make_input_fns
