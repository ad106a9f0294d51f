"""Recipes that make the shipped `digits` space (digits.py) and its decoder variants (digits_variants.py).

Not part of the runtime: the server only loads what these write (app/spaces/weights/digits). Run from the
repository root, `python -m training.digits --out DIR` or `latentmap train-digits`.
"""
