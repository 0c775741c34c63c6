"""A TFDS builder for scikit-learn's bundled 8x8 digits, built with no network.

`sklearn.datasets.load_digits` ships inside scikit-learn, so this builder needs
no download: `download_and_prepare` reads the bundled array and writes ordinary
TFRecord shards into `data_dir`. After that the data set loads like any other
TFDS data set:

```python
from keras_net2net.data import digits
builder = digits.SklearnDigits(data_dir="/tmp/tfds")
builder.download_and_prepare()
train = builder.as_dataset(split="train", as_supervised=True)
```
"""

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from keras_net2net.data import offline

# The split must never change between runs or machines: a model trained
# yesterday is evaluated on the same 360 images today.
NUM_TEST_EXAMPLES = 360
_SPLIT_SEED = 0
# load_digits stores integer intensities 0..16; images are kept as uint8 on
# disk (TFDS images are uint8) and scaled by the input pipeline.
MAX_INTENSITY = 16


def train_test_indices(labels):
    """Deterministic, stratified train/test split of the digits examples.

    Args:
        labels: 1-D integer array with the class of each example.

    Returns:
        (train_indices, test_indices), sorted NumPy arrays that together cover
        every example once; the test part has `NUM_TEST_EXAMPLES` entries.

    Example:
    >>> import numpy as np
    >>> train, test = train_test_indices(np.arange(1797) % 10)
    >>> len(train), len(test)
    (1437, 360)
    """
    # Imported here so that importing the builder stays cheap.
    from sklearn import model_selection
    indices = np.arange(len(labels))
    train, test = model_selection.train_test_split(
        indices, test_size=NUM_TEST_EXAMPLES, random_state=_SPLIT_SEED,
        stratify=labels)
    return np.sort(train), np.sort(test)


class SklearnDigits(offline.OfflineBuilder):
    """scikit-learn's digits: 1797 grey 8x8 images of handwritten digits 0-9."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified 1437/360 train/test split, seed 0."}

    # TFDS 4.9 finds a builder's source through `importlib_resources`, a package
    # it does not install on Python >= 3.9, and fails on first use. Naming the
    # file here skips that lookup; nothing else is read from beside it.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(__file__)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
            description=(
                "Optical recognition of handwritten digits (UCI), as bundled with "
                "scikit-learn. Pixel values are integers in [0, 16]."),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the data ship with scikit-learn.
        from sklearn import datasets
        bunch = datasets.load_digits()
        images = bunch.images.astype(np.uint8)[..., np.newaxis]
        labels = bunch.target.astype(np.int64)
        train, test = train_test_indices(labels)
        return {
            "train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test),
        }

    def _generate_examples(self, images, labels, indices):
        for index in indices:
            # The index into load_digits is a stable, unique key.
            yield int(index), {"image": images[index], "label": labels[index]}
