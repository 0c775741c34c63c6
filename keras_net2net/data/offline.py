"""What the offline TFDS builders share."""

from absl import logging
import tensorflow_datasets as tfds


class OfflineBuilder(tfds.core.GeneratorBasedBuilder):
    """A TFDS builder whose data is made on this machine, never downloaded.

    TFDS prints "Downloading and preparing dataset Unknown size ..." to
    stdout before preparing any data set; for these builders that is wrong,
    so they say what happens instead, once, through absl logging. (The two
    hooks are TFDS's private methods of `DatasetBuilder`.)
    """

    def _log_download_bytes(self):
        logging.info("Building %s offline into %s (once per data_dir).",
                     self.name, self.data_dir)

    def _log_download_done(self):
        logging.info("Built %s.", self.name)
