"""Every network kind by name: what ``model.kind`` in a configuration and ``kind`` in a model file select.

A network kind is an ``nn.Module`` class with a ``kind`` name, built as ``cls(in_channels=C, **params)`` (and
``out_channels=K`` for a network of several outputs, a segmenter's classes: only kinds that take it):
its own parameters are the keyword arguments of its constructor besides ``in_channels`` and ``out_channels`` (their
annotations give the types, their defaults the defaults); ``parameter_docs`` documents each and
``parameter_checks`` states its allowed values (:mod:`mrsynth.checks`).
``trainable = False`` marks the lookup tables, fitted in closed form rather than trained; they are
rebuilt from their stored tables by ``from_state``.  Adding a network is one file with its class and
one :func:`register` line in :mod:`mrsynth.networks`.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any

from torch import nn

_NETWORKS: dict[str, type[nn.Module]] = {}


@dataclass(frozen=True)
class Parameter:
    """One constructor parameter of a network kind."""

    name: str
    kind: Any  # int, float, str, bool or list[int]
    default: Any
    doc: str
    check: Any = None  # the allowed values (mrsynth.checks), or None: any value of the type


def register(network: type[nn.Module]) -> type[nn.Module]:
    """Make ``network`` (a class with a ``kind`` name) buildable and loadable by that name."""
    _NETWORKS[network.kind] = network
    return network


def unregister(kind: str) -> None:
    _NETWORKS.pop(kind, None)


def kinds(trainable: bool | None = None) -> tuple[str, ...]:
    """Registered kinds (only the trainable ones, or only the fitted lookups, when asked)."""
    return tuple(k for k, c in _NETWORKS.items() if trainable is None or getattr(c, "trainable", True) == trainable)


def network_class(kind: str) -> type[nn.Module]:
    if kind not in _NETWORKS:
        raise ValueError(f"unknown network kind {kind!r}; choose from {', '.join(_NETWORKS)}")
    return _NETWORKS[kind]


def parameters(kind: str) -> tuple[Parameter, ...]:
    """A kind's own parameters, from its constructor's signature and ``parameter_docs``."""
    cls = network_class(kind)
    hints = typing.get_type_hints(cls.__init__)
    docs, checks = getattr(cls, "parameter_docs", {}), getattr(cls, "parameter_checks", {})
    found = []
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "in_channels", "out_channels") or parameter.kind in (
            parameter.VAR_POSITIONAL,
            parameter.VAR_KEYWORD,
        ):
            continue
        kind_of = hints.get(name, type(parameter.default))
        if typing.get_origin(kind_of) is tuple:  # a fixed-length sequence is a list in a configuration file
            kind_of = list[typing.get_args(kind_of)[0]]
        default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
        found.append(Parameter(name, kind_of, default, docs.get(name, ""), checks.get(name)))
    return tuple(found)


def defaults(kind: str) -> dict:
    return {p.name: p.default for p in parameters(kind)}


def build(kind: str, in_channels: int, params: dict | None = None, out_channels: int = 1) -> nn.Module:
    """A fresh network of ``kind`` with ``params`` (missing ones take their defaults) and ``out_channels``
    outputs."""
    cls = network_class(kind)
    if out_channels == 1:
        return cls(in_channels=in_channels, **(params or {}))
    if "out_channels" not in inspect.signature(cls.__init__).parameters:
        raise ValueError(f"a {kind} network has one output channel, not {out_channels}")
    return cls(in_channels=in_channels, out_channels=out_channels, **(params or {}))


def from_state(kind: str, in_channels: int, params: dict, state: dict, out_channels: int = 1) -> nn.Module:
    """A network with stored weights: built and loaded, or, for kinds that size themselves from their state (the
    lookup tables), ``cls.from_state(state)``."""
    cls = network_class(kind)
    if hasattr(cls, "from_state"):
        return cls.from_state(state)
    network = build(kind, in_channels, params, out_channels)
    network.load_state_dict(state)
    return network
