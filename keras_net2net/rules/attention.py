"""Attention layers (MultiHeadAttention, GroupQueryAttention) and EinsumDense.
See TABLE."""

# {layer class: rule instance}; merged into the registry by rules/__init__.py.
TABLE = {}
