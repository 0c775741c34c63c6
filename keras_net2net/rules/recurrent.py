"""Recurrent layers (LSTM, GRU, SimpleRNN) and their wrappers
(Bidirectional, TimeDistributed). See TABLE."""

# {layer class: rule instance}; merged into the registry by rules/__init__.py.
TABLE = {}
