"""Adapters between diffagents and other libraries (installed as ``diffagents.wrappers``).

Kept light: submodules (``gymnasium``, ``chunks``, ``pettingzoo``, ``sb3``, ``tianshou``,
``synther_tianshou``) are imported
explicitly, e.g. ``from diffagents.wrappers.gymnasium import FlattenDictObservation``.
"""
