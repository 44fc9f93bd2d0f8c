"""The flax.linen face of the networks: ``init`` / ``apply`` and exact weight conversion.

A linen user wraps any network of this package (or a preset factory) with :func:`as_linen`
and gets a ``flax.linen.Module``: ``init`` draws the NNX network's own initialisation,
``apply`` runs the NNX code on the given variables. The variables are the NNX state, one
linen collection per variable type, with the NNX attribute paths as nested dict keys:

- ``"params"``: every ``nnx.Param`` (float32 weights), e.g.
  ``variables["params"]["blocks"]["0"]["attn"]["query"]["kernel"]``;
- other ``nnx.Variable`` types keep their bridge collection name (EDM2's fixed Fourier
  tables: ``"FixedBuffer"``);
- RNG streams (EDM2 dropout) are not variables: ``apply`` takes them from linen's ``rngs``.

List indices become string keys (``"0"``, ``"1"``) so that the dict serialises like any
linen tree. :func:`linen_variables_from_nnx` and :func:`nnx_from_linen_variables` convert
weights between the two forms without touching a value (the arrays are moved, not
recomputed), so a checkpoint trained in either form loads into the other bit for bit.

The layout and collection names are those of ``flax.nnx.bridge.ToLinen``; this module is a
standalone ``linen.Module`` rather than ``ToLinen`` itself because ``ToLinen`` (flax 0.12.8)
re-runs the random initialisation on every ``apply`` (costly outside ``jit``), keeps the
random initial value of any parameter missing from the variables without a word, and keys
list entries by ``int``. Here ``apply`` builds the network abstractly (``nnx.eval_shape``),
and a missing, unexpected or mis-shaped variable raises and names its path.

Entry points other than ``__call__`` (``SDVAE.encode`` / ``decode``, ``RAEDecoder``
``predict_patches``, ``DINOv2.embed``) are reached with linen's ``method=`` (a name) or
``nnx_method=`` (a name or any ``fn(network, *args, **kwargs)``, e.g.
:func:`~nnx_nets.force_weight_normalization` with ``mutable=["params"]``). Keyword options
of a call (``return_features=True``, ``intermediate_layers=(8,)``) pass through ``apply``.

Example::

    import functools, jax, jax.numpy as jnp
    from nnx_nets import as_linen, dit_from_preset

    model = as_linen(functools.partial(dit_from_preset, "DiT-S/2"), input_size=8,
                     in_channels=4, num_classes=10)
    x, t, y = jnp.zeros((2, 8, 8, 4)), jnp.full((2,), 0.5), jnp.zeros((2,), jnp.int32)
    variables = jax.jit(model.init)(jax.random.key(0), x, t, y)
    out = jax.jit(model.apply)(variables, x, t, y)  # (2, 8, 8, 4), t = 0 data, t = 1 noise
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen, nnx
from flax.core import FrozenDict, meta
from flax.nnx import traversals, variablelib

__all__ = ["LinenNetwork", "as_linen", "linen_variables_from_nnx", "nnx_from_linen_variables"]

NetworkFactory = Callable[..., nnx.Module]
"""An NNX network class or a factory ``f(**kwargs, rngs=nnx.Rngs) -> nnx.Module``."""

_MAX_LISTED_PATHS = 12


class LinenNetwork(linen.Module):
    """A network of nnx-nets as a ``flax.linen.Module``; build it with :func:`as_linen`.

    ``init(key, *inputs)`` constructs the NNX network with ``nnx.Rngs`` drawn from linen's
    ``params`` stream (plus any other stream passed to ``init``) and returns its state as
    linen variables; ``apply(variables, *inputs)`` runs it on those variables. Inputs and
    outputs are those of the NNX network (NHWC images and latents; ``t`` in [0, 1] with
    t = 0 data and t = 1 noise; see CONVENTIONS.md).

    Attributes:
      network: the NNX class or factory (``functools.partial(dit_from_preset, "DiT-XL/2")``).
      kwargs: its constructor keyword arguments, without ``rngs``.
    """

    network: NetworkFactory
    kwargs: FrozenDict = FrozenDict()

    @linen.compact
    def __call__(
        self, *args: Any, nnx_method: str | Callable[..., Any] | None = None, **kwargs: Any
    ) -> Any:
        """Run ``nnx_method`` (default ``__call__``) of the network on this module's variables.

        Args:
          *args: positional inputs of the NNX method, e.g. ``x (B, H, W, C), t (B,), y (B,)``.
          nnx_method: a method name of the network (``"encode"``) or a function
            ``fn(network, *args, **kwargs)``; ``None`` calls the network.
          **kwargs: keyword inputs of the NNX method (``return_features=True``).

        Returns:
          Whatever the NNX method returns. Under ``apply(..., mutable=[...])`` the changes
          the method made to those collections come back as linen variables.
        """
        if self.is_initializing():
            network = _build(self.network, self.kwargs, self._init_rngs())
            self._store(network)  # the initial state, before a call may change it
        else:
            network = _abstract(self.network, self.kwargs)
            _load(network, self.variables, source=f"linen variables of {_describe(self)}")
            self._seed_streams(network)
        out = _resolve(network, nnx_method)(*args, **kwargs)
        if not self.is_initializing():
            self._store(network)
        return out

    def __getattr__(self, name: str) -> Any:
        # Lets linen's ``apply(..., method="encode")`` / ``model.encode`` reach NNX methods.
        network_class = _network_class(self.network)
        if (
            not name.startswith("_")
            and network_class is not None
            and not hasattr(nnx.Module, name)  # only the network's own methods
            and callable(getattr(network_class, name, None))
        ):
            # A bound method: linen's apply unbinds it and rebinds its own clone.
            return types.MethodType(_forwarder(name), self)
        return super().__getattr__(name)

    def _init_rngs(self) -> nnx.Rngs:
        streams = {name: self.make_rng(name) for name in self.scope.rngs if name != "params"}
        return nnx.Rngs(default=self.make_rng("params"), **streams)

    def _seed_streams(self, network: nnx.Module) -> None:
        streams = _rng_streams(network)
        missing = sorted({name for name, _ in streams if not self.has_rng(name)})
        if missing:
            raise ValueError(
                f"{_describe(self)} holds RNG stream(s) {missing} (e.g. dropout > 0): pass "
                f"rngs={{{missing[0]!r}: key}} to apply, or build the linen module with "
                "dropout=0.0 for inference (the parameters are the same)"
            )
        for name, stream in streams:
            _reset_stream(stream, self.make_rng(name))

    def _store(self, network: nnx.Module) -> None:
        for collection, tree in linen_variables_from_nnx(network).items():
            if self.is_mutable_collection(collection):
                for name, value in tree.items():
                    self.put_variable(collection, name, value)


def as_linen(network: NetworkFactory, /, **kwargs: Any) -> LinenNetwork:
    """Wrap an NNX network class or factory of this package as a linen module.

    Args:
      network: ``DiT``, ``SDVAE``, ... or a factory such as
        ``functools.partial(dinov2_from_preset, "dinov2-vitb14-reg")`` (the preset name is
        positional). Inside a parent linen module the wrapper is named like any submodule
        (the attribute name in ``setup``, ``LinenNetwork_0`` in ``compact``).
      **kwargs: constructor keyword arguments, without ``rngs`` (linen's ``init`` supplies
        the keys). With hashable values (tuples, not lists) the shape-only network that
        ``apply`` fills is traced once per configuration instead of once per call.

    Returns:
      A :class:`LinenNetwork`; ``init(key, *inputs)`` returns
      ``{"params": {...}, ...}`` and ``apply(variables, *inputs, method=None)`` the NNX
      output.

    Raises:
      ValueError: if ``rngs`` is given.
    """
    if "rngs" in kwargs:
        raise ValueError(
            "as_linen: do not pass rngs; linen's init(key, ...) draws the initialisation "
            "(pass rngs={'params': key, 'dropout': key2} to init/apply for more streams)"
        )
    return LinenNetwork(network=network, kwargs=FrozenDict(kwargs))


def linen_variables_from_nnx(model: nnx.Module) -> dict[str, dict[str, Any]]:
    """The state of an NNX network as linen variables, exactly (no value is recomputed).

    Args:
      model: any NNX network of this package (concrete, not ``nnx.eval_shape`` output).

    Returns:
      ``{collection: nested dict}`` with string keys: ``"params"`` for ``nnx.Param`` and
      the bridge collection name for other variable types; RNG stream state is left out.
      ``LinenNetwork.apply`` accepts it as is.
    """
    flat: dict[tuple[str, ...], Any] = {}
    for path, variable in _flat_variables(model):
        flat[(_collection(variable), *map(str, path))] = variable.get_value()
    return traversals.unflatten_mapping(flat)


def nnx_from_linen_variables(
    network: NetworkFactory | LinenNetwork,
    variables: Mapping[str, Any],
    /,
    *,
    rngs: nnx.Rngs | None = None,
    **kwargs: Any,
) -> nnx.Module:
    """Build the NNX network holding exactly the given linen variables.

    The network is constructed abstractly (``nnx.eval_shape``, no random draw) and every
    variable is filled from ``variables``; values keep their dtype and bits.

    Args:
      network: the NNX class or factory, or the :class:`LinenNetwork` that made the
        variables (its constructor arguments are then used and ``kwargs`` must be empty).
      variables: ``{"params": {...}, ...}`` as returned by ``LinenNetwork.init`` or
        :func:`linen_variables_from_nnx`, with every collection the network has;
        linen metadata boxes (``nn.Partitioned``) are unboxed.
      rngs: seeds the network's RNG streams (EDM2 dropout) if it has any; default
        ``nnx.Rngs(0)``. Parameters never come from it.
      **kwargs: constructor keyword arguments, without ``rngs``.

    Returns:
      The NNX network.

    Raises:
      ValueError: naming every missing, unexpected or mis-shaped variable path.
    """
    if isinstance(network, LinenNetwork):
        if kwargs:
            raise ValueError(
                "nnx_from_linen_variables: a LinenNetwork carries its constructor arguments; "
                f"do not pass {sorted(kwargs)} as well"
            )
        network, kwargs = network.network, dict(network.kwargs)
    model = _abstract(network, FrozenDict(kwargs))
    _load(model, variables, source="the linen variables")
    rngs = nnx.Rngs(0) if rngs is None else rngs
    for name, stream in _rng_streams(model):
        _reset_stream(stream, rngs[name]())
    return model


def _build(network: NetworkFactory, kwargs: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    return network(**kwargs, rngs=rngs)


def _abstract(network: NetworkFactory, kwargs: Mapping[str, Any]) -> nnx.Module:
    """A fresh shape-only network (every variable a ``jax.ShapeDtypeStruct``)."""
    key = (network, FrozenDict(kwargs))
    try:
        hash(key)
    except TypeError:  # unhashable constructor arguments (lists): build without the cache
        return nnx.eval_shape(lambda: _build(network, kwargs, nnx.Rngs(0)))
    graphdef, state = _abstract_split(*key)
    # copy: the caller fills the variables in place; the cached state must stay abstract.
    return nnx.merge(graphdef, state, copy=True)


@functools.lru_cache(maxsize=32)
def _abstract_split(network: NetworkFactory, kwargs: FrozenDict) -> tuple[Any, Any]:
    # Tracing a constructor costs 0.3-1.5 s even for tiny networks; apply, init and the
    # converters all need the same skeleton, so it is traced once per configuration.
    return nnx.split(nnx.eval_shape(lambda: _build(network, kwargs, nnx.Rngs(0))))


def _flat_variables(model: nnx.Module) -> list[tuple[tuple[Any, ...], nnx.Variable]]:
    return list(nnx.to_flat_state(nnx.state(model, nnx.Not(nnx.RngState))))


def _collection(variable: nnx.Variable) -> str:
    return variablelib.variable_name_from_type(type(variable), allow_register=True)


def _load(model: nnx.Module, variables: Mapping[str, Any], *, source: str) -> None:
    """Set every (non-RNG) variable of ``model`` from linen ``variables``, checking paths."""
    given = traversals.flatten_mapping(meta.unbox(_plain_dict(variables)))
    given = {tuple(map(str, path)): value for path, value in given.items()}
    expected = {
        (_collection(variable), *map(str, path)): variable
        for path, variable in _flat_variables(model)
    }
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source} do not match the network's variables "
            f"({len(missing)} missing, {len(unexpected)} unexpected):"
            f"{_list_paths('missing', missing)}{_list_paths('unexpected', unexpected)}\n"
            "Check the constructor arguments (widths, depth, num_classes, learn_sigma, ...) "
            "and that the dict holds every collection (e.g. 'params' and 'FixedBuffer')."
        )
    wrong = [
        f"\n  - {'/'.join(path)}: got {jnp.shape(given[path])}, "
        f"expected {tuple(variable.get_value().shape)}"
        for path, variable in expected.items()
        if tuple(jnp.shape(given[path])) != tuple(variable.get_value().shape)
    ]
    if wrong:
        raise ValueError(
            f"{source} have wrong shapes for {len(wrong)} variable(s):"
            + "".join(wrong[:_MAX_LISTED_PATHS])
        )
    for path, variable in expected.items():
        variable.set_value(jnp.asarray(given[path]))


def _plain_dict(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {key: _plain_dict(value) for key, value in tree.items()}
    return tree


def _list_paths(kind: str, paths: list[tuple[str, ...]]) -> str:
    lines = "".join(f"\n  - {kind}: {'/'.join(path)}" for path in paths[:_MAX_LISTED_PATHS])
    if len(paths) > _MAX_LISTED_PATHS:
        lines += f"\n  ... and {len(paths) - _MAX_LISTED_PATHS} more {kind}"
    return lines


def _rng_streams(model: nnx.Module) -> list[tuple[str, nnx.RngStream]]:
    """Every RNG stream with the linen rng name it draws from.

    ``nnx.Dropout`` names its stream ``rng_collection`` ("dropout"); the stream's own tag is
    that of the ``nnx.Rngs`` it was forked from ("default" when built from ``Rngs(0)``).
    """
    nodes = [node for _, node in nnx.iter_graph(model)]
    owners = {
        id(node.rngs): node.rng_collection
        for node in nodes
        if isinstance(getattr(node, "rngs", None), nnx.RngStream)
        and isinstance(getattr(node, "rng_collection", None), str)
    }
    return [
        (owners.get(id(node), node.tag), node) for node in nodes if isinstance(node, nnx.RngStream)
    ]


def _reset_stream(stream: nnx.RngStream, key: jax.Array) -> None:
    """Seed ``stream`` from one key (split to the stream's shape for per-block streams)."""
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    shape = stream.key.get_value().shape
    stream.key.set_value(jax.random.split(key, shape) if shape else key)
    count = stream.count.get_value()
    stream.count.set_value(jnp.zeros(count.shape, count.dtype))


def _resolve(network: nnx.Module, method: str | Callable[..., Any] | None) -> Callable[..., Any]:
    if method is None:
        return network
    if callable(method):
        return functools.partial(method, network)
    bound = getattr(network, method, None)
    if not callable(bound):
        raise ValueError(
            f"{type(network).__name__} has no method {method!r}; pass a method name such as "
            "'encode' or a function fn(network, *args, **kwargs)"
        )
    return bound


def _forwarder(method: str) -> Callable[..., Any]:
    def call(module: LinenNetwork, *args: Any, **kwargs: Any) -> Any:
        return module(*args, nnx_method=method, **kwargs)

    call.__name__ = method
    return call


def _network_class(network: Any) -> type | None:
    """The class a factory builds: the class itself, through partials, or the return hint."""
    while isinstance(network, functools.partial):
        network = network.func
    if isinstance(network, type):
        return network
    try:
        hint = typing.get_type_hints(network).get("return")
    except (NameError, TypeError):
        return None
    return hint if isinstance(hint, type) else None


def _describe(module: LinenNetwork) -> str:
    network_class = _network_class(module.network)
    return network_class.__name__ if network_class is not None else repr(module.network)
