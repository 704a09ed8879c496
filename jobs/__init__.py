"""Spark batch jobs. Each job is a package with ``transforms.py`` (pure DataFrame functions) and ``main.py``."""
