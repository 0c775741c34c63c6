"""Records where the training streams a comparison opens start."""


def record_stream_starts(monkeypatch):
    """Patches `inputs.make_input_fns` so that every training stream opened
    appends its `start_step` to the returned list, in order."""
    from keras_net2net.data import inputs

    make_input_fns = inputs.make_input_fns
    starts = []

    def recording_inputs(*args, **kwargs):
        train_fn, eval_fn, info = make_input_fns(*args, **kwargs)

        def train_fn_recorded(input_context, start_step=0):
            starts.append(start_step)
            return train_fn(input_context, start_step=start_step)
        return train_fn_recorded, eval_fn, info

    monkeypatch.setattr(inputs, "make_input_fns", recording_inputs)
    return starts
