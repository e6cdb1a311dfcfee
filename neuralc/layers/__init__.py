"""The layer catalog (catalog.py) and the layer families that register into it."""
