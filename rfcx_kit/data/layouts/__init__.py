"""Competition layouts: one ``layout_<name>.py`` per way a data folder can be laid out, registered in
``registry.py``; :func:`read_competition` reads any of them into one validated ``Competition``."""

from rfcx_kit.data.layouts.registry import read_competition

__all__ = ["read_competition"]
