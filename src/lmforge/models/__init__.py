"""Architectures: one folder each (config.py, model.py, convert.py), registered in ``registry``."""
