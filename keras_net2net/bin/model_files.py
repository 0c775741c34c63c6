"""Reading user-named model files with errors that name the flag."""

import keras


class ModelFileError(ValueError):
    """A file named by a flag is not a readable Keras model."""


def load(path, flag_name):
    """Loads a .keras model; a bad file raises an error naming flag and file.

    Args:
        path: the file.
        flag_name: the flag it came from, named in the error.

    Returns:
        The uncompiled `keras.Model`.

    Raises:
        ModelFileError: if the file cannot be read as a Keras model.
    """
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file.
        raise ModelFileError(
            f"Expected a .keras file written by model.save(). Received: "
            f"--{flag_name}={path}, which Keras cannot read as a model "
            f"({type(error).__name__}: {str(error).rstrip('.')}). Fix: point "
            f"--{flag_name} at a saved .keras model; the file was not changed.") from error
