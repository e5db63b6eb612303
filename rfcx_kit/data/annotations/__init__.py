"""Annotation formats: one ``format_<name>.py`` per export a person or a detector writes (Raven, Audacity, Arbimon,
a generic CSV), registered in ``registry.py``; ``table.py`` holds what their readers share."""
