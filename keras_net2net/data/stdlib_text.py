"""A TFDS builder of byte sequences from this Python's standard library.

Real text that is on every machine with Python and needs no download: the
`.py` files of the standard library (code, comments and docstrings). Each
file is cut into consecutive, non-overlapping windows of `WINDOW` bytes;
bytes above 127 become 0. A file belongs wholly to one split, chosen by a
hash of its relative path, so no test window overlaps a training window, and
the split does not depend on file order or count. The "default" and "small"
configs read only the top-level `*.py` files (sorted), up to their size, so
the data set is the same on every machine with the same Python version;
"large" reads the packages too (not their tests), up to 12 MB: enough that
the savings study's longest runs never read a window twice.

```python
from keras_net2net.data import stdlib_text
builder = stdlib_text.StdlibBytes(data_dir="/tmp/tfds")
builder.download_and_prepare()  # a few seconds
```

Language models read it as (bytes[:-1], bytes[1:]) pairs: predict each next
byte.
"""

import glob
import hashlib
import os
import sysconfig

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from keras_net2net.data import offline

WINDOW = 33  # 32 input bytes and the 32 next bytes they predict
VOCAB = 128
MAX_BYTES = 2_500_000
TEST_PERCENT = 7  # of files, by hash of their name


# Package folders "large" leaves out: installed third-party code, and the
# test suites (long runs of near-identical test code).
SKIPPED_FOLDERS = frozenset({"site-packages", "dist-packages", "test", "tests"})


def source_files(recursive=False):
    """The standard library's .py files as paths relative to it, sorted:
    the top-level ones, or (recursive) those of its packages too."""
    root = sysconfig.get_paths()["stdlib"]
    if not recursive:
        return sorted(os.path.basename(p) for p in glob.glob(os.path.join(root, "*.py")))
    paths = glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
    relative = (os.path.relpath(p, root) for p in paths)
    return sorted(r for r in relative
                  if not SKIPPED_FOLDERS & set(r.split(os.sep)[:-1]))


def is_test_file(path):
    """Whether `path` (relative to the standard library) belongs to the test
    split: a fixed hash of it (for a top-level file, its name)."""
    digest = hashlib.sha256(path.encode()).digest()
    return digest[0] * 100 // 256 < TEST_PERCENT


def windows(split, max_bytes=MAX_BYTES, recursive=False):
    """The split's byte windows in a fixed order.

    Args:
        split: "train" or "test".
        max_bytes: read files (in sorted order) until this many bytes.
        recursive: read the packages' files too (see `source_files`).

    Returns:
        (keys, windows): keys are "file:offset" strings, unique across both
        splits; windows an (n, WINDOW) uint8 array of values below VOCAB.
    """
    keys, rows, size = [], [], 0
    root = sysconfig.get_paths()["stdlib"]
    for path in source_files(recursive):
        with open(os.path.join(root, path), "rb") as f:
            data = np.frombuffer(f.read(), dtype=np.uint8).copy()
        size += len(data)
        if size > max_bytes:
            break
        if is_test_file(path) != (split == "test"):
            continue
        data[data >= VOCAB] = 0
        count = len(data) // WINDOW
        rows.append(data[:count * WINDOW].reshape(count, WINDOW))
        keys.extend(f"{path}:{i * WINDOW}" for i in range(count))
    return keys, np.concatenate(rows)


class StdlibBytesConfig(tfds.core.BuilderConfig):
    """How much of the standard library to read.

    Attributes:
        max_bytes: files are read in sorted order until this many bytes.
        recursive: read the packages' files too, not only the top level.
    """

    def __init__(self, *, max_bytes, recursive=False, **kwargs):
        super().__init__(**kwargs)
        self.max_bytes = max_bytes
        self.recursive = recursive


class StdlibBytes(offline.OfflineBuilder):
    """Windows of 33 bytes of the Python standard library's own source.

    Configs: "default" (2.5 MB, the data set of the demo), "small"
    (900 KB, for quick tests: `stdlib_bytes/small`; fewer than 2,000
    held-out windows) and "large" (up to 12 MB with the packages, for the
    savings study: `stdlib_bytes/large`).
    """

    BUILDER_CONFIGS = [
        StdlibBytesConfig(name="default", max_bytes=MAX_BYTES,
                          description="Up to 2.5 MB of source."),
        StdlibBytesConfig(name="small", max_bytes=900_000,
                          description="Up to 900 KB of source, for tests."),
        StdlibBytesConfig(name="large", max_bytes=12_000_000, recursive=True,
                          description="Up to 12 MB of source, packages included "
                                      "(not their tests)."),
    ]
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Top-level stdlib *.py files up to 2.5 MB; 7% of files "
                              "(by name hash) held out."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):  # See digits.SklearnDigits.code_path.
        return epath.Path(__file__)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "bytes": tfds.features.Tensor(shape=(WINDOW,), dtype=np.uint8),
            }),
            description="Byte windows of this Python's standard library sources.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split):
        keys, rows = windows(split, self.builder_config.max_bytes,
                             self.builder_config.recursive)
        for key, row in zip(keys, rows):
            yield key, {"bytes": row}
