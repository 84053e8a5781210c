"""Where a group's arrays live when a process has several devices: a ('members', 'data') mesh, no pmap.

`make_placement` picks a layout for one group (`placement_for_group` is the sweep's variant that falls back to
fewer devices instead of failing). Members of an ensemble are independent models, so splitting the
member axis E over devices needs no communication at all; splitting each member's batch over devices ('data')
adds one all-reduce of the gradients per step and is the fallback when E does not divide evenly. The engine hands
`place_members` every [E, …] tree (training states, per-member values, per-member evaluation sets) and passes
`batch_sharding` into the compiled step and the evaluator, which constrain one member's sampled batch (one chunk
of evaluation sequences) inside `jax.vmap`, so that devices on 'data' share a member's evaluation too.

Checked on jax 0.10.2 (tests/test_parallel.py): `jax.vmap` without `spmd_axis_name` turns a constraint
`P('data', …)` on one member's [B, …] array into `P(UNCONSTRAINED, 'data', …)` on the batched [E, B, …] array,
so the member axis stays free to be split over 'members' and the constraint composes with vmap on 1-D and 2-D
meshes alike; sharded runs match the single-device run. With several devices the engine resolves the ensemble strategy
to `vmap`; forcing `map` over a split member axis would still be correct but makes every device loop over all
members.

Several hosts (`--multihost`) share a sweep, not a model: each process builds its mesh from its own local devices
and trains only its own cells (`initialize_multihost` returns its shard for the sweep; `process_shard` slices any
list the same way), so no program ever spans hosts and each host writes its own run folders.
"""

from __future__ import annotations

import logging
from typing import Sequence, TypeVar

import jax
import numpy as np
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

MEMBERS, DATA = "members", "data"
AXES = (MEMBERS, DATA)
PREFERENCES = (MEMBERS, DATA)

T = TypeVar("T")


class Placement:
    """A ('members', 'data') mesh over one process's devices and the shardings the engine asks for."""

    def __init__(self, mesh: Mesh):
        if tuple(mesh.axis_names) != AXES:
            raise ValueError(f"a placement mesh needs axes {AXES}, got {tuple(mesh.axis_names)}")
        self.mesh = mesh

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def members_size(self) -> int:
        return self.mesh.shape[MEMBERS]

    @property
    def data_size(self) -> int:
        return self.mesh.shape[DATA]

    def members_sharding(self) -> NamedSharding:
        """Leading axis E split over 'members', replicated over 'data'."""
        return NamedSharding(self.mesh, PartitionSpec(MEMBERS))

    def place_members(self, tree: T) -> T:
        """Puts every array of `tree` (leading axis = ensemble member) on the mesh, split along that axis."""
        sharding = self.members_sharding()
        replicated = NamedSharding(self.mesh, PartitionSpec())

        def place(x):
            x = jnp.asarray(x)
            if x.ndim == 0:
                return jax.device_put(x, replicated)
            if x.shape[0] % self.members_size:
                raise ValueError(f"an array with leading axis {x.shape[0]} cannot be split over "
                                 f"{self.members_size} devices on the '{MEMBERS}' axis")
            return jax.device_put(x, sharding)

        return jax.tree.map(place, tree)

    def batch_sharding(self, ndim: int) -> NamedSharding:
        """Sharding of one member's batch array of rank `ndim` (batch axis first) over 'data', for
        `jax.lax.with_sharding_constraint` inside the (vmapped) per-member step. Always a sharding (never None, which
        `with_sharding_constraint` rejects); with one device on 'data' it only keeps each member's batch whole."""
        return NamedSharding(self.mesh, PartitionSpec(DATA, *([None] * (ndim - 1))))

    def replicate(self, tree: T) -> T:
        """Puts every array of `tree` on every device of the mesh once (what all members read: the stacked pools,
        the shared evaluation sets, bootstrap indices), so that no compiled call copies it out again."""
        replicated = NamedSharding(self.mesh, PartitionSpec())
        return jax.tree.map(lambda x: jax.device_put(jnp.asarray(x), replicated), tree)

    def describe(self) -> str:
        return f"{self.num_devices} device(s): {self.members_size} on '{MEMBERS}' × {self.data_size} on '{DATA}'"

    def __repr__(self) -> str:
        return f"Placement({self.describe()})"


def mesh_of(devices: Sequence, members_size: int, data_size: int) -> Mesh:
    """A ('members', 'data') mesh of shape (members_size, data_size) over `devices`, in their order.

    Both axes are Auto (the compiler propagates shardings; `with_sharding_constraint` pins them), which is what
    the vmap behaviour described above relies on; Explicit axes would type every array by its sharding.
    """
    grid = np.asarray(devices, dtype=object).reshape(members_size, data_size)
    return Mesh(grid, AXES, axis_types=(AxisType.Auto, AxisType.Auto))


def _layout(num_members: int, batch_size: int, num_devices: int, prefer: str) -> tuple[int, int] | None:
    n = num_devices
    pure = {MEMBERS: (n, 1), DATA: (1, n)}
    sizes = {MEMBERS: num_members, DATA: batch_size}
    for axis in (prefer, DATA if prefer == MEMBERS else MEMBERS):
        if sizes[axis] % n == 0:
            return pure[axis]
    for m in sorted((m for m in range(1, n + 1) if n % m == 0), reverse=True):
        if num_members % m == 0 and batch_size % (n // m) == 0:
            return m, n // m
    return None


def largest_usable_device_count(num_members: int, batch_size: int, num_devices: int) -> int:
    """The most of `num_devices` devices that some layout of the group fits exactly (at least 1)."""
    return next(k for k in range(num_devices, 0, -1) if _layout(num_members, batch_size, k, MEMBERS))


def choose_layout(num_members: int, batch_size: int, num_devices: int, prefer: str = MEMBERS) -> tuple[int, int]:
    """(members_size, data_size) with product `num_devices`.

    In order: all devices on the preferred axis if it divides evenly, then all on the other axis, then the
    split n = m·d with m | num_members and d | batch_size that puts the most devices on 'members'. Padding is
    not offered: a padded member would be a model trained for nothing, and a padded batch would change the loss.
    Raises ValueError naming what would work instead.
    """
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer={prefer!r}; allowed: {', '.join(PREFERENCES)}")
    layout = _layout(num_members, batch_size, num_devices, prefer)
    if layout is None:
        n, usable = num_devices, largest_usable_device_count(num_members, batch_size, num_devices)
        raise ValueError(
            f"cannot lay out num_members={num_members} models with batch_size={batch_size} over {n} devices: "
            f"neither divides evenly, nor does any split of the {n} devices into members × data. Use an ensemble "
            f"size or a batch size that is a multiple of {n}, or {usable} device(s) "
            f"(make_placement(..., devices=jax.local_devices()[:{usable}]))")
    return layout


def make_placement(num_members: int, batch_size: int, devices: Sequence | None = None,
                   prefer: str = MEMBERS) -> Placement | None:
    """The placement of one group of `num_members` models of batch `batch_size` over `devices` (default: this
    process's local devices), or None on a single device (the engine's single-device path).

    See `choose_layout` for the order in which layouts are tried; a layout that does not divide raises a
    ValueError that names the sizes, the device count and what would work.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    if len(devices) <= 1:
        return None
    members_size, data_size = choose_layout(num_members, batch_size, len(devices), prefer)
    placement = Placement(mesh_of(devices, members_size, data_size))
    log.info("placement for %d member(s), batch %d: %s", num_members, batch_size, placement.describe())
    return placement


def placement_for_group(num_members: int, batch_size: int, devices: Sequence | None = None) -> Placement | None:
    """`make_placement` for a sweep's groups: where no layout of all devices fits a group, it uses the most
    devices that do fit (logging a warning) instead of stopping the sweep."""
    devices = list(jax.local_devices() if devices is None else devices)
    count = largest_usable_device_count(num_members, batch_size, len(devices))
    if count < len(devices):
        log.warning("no layout of %d models with batch %d fits %d devices; using %d of them for this group",
                    num_members, batch_size, len(devices), count)
    return make_placement(num_members, batch_size, devices[:count])


def compose_shard(shard: tuple[int, int] | None, process_index: int, process_count: int) -> tuple[int, int]:
    """This process's part of shard (i, n) as one shard: cells j with j ≡ i (mod n) dealt round-robin to the
    processes are exactly those with j ≡ i + n·p (mod n·P)."""
    index, count = shard if shard is not None else (0, 1)
    return index + count * process_index, count * process_count


# No program spans hosts, so hosts finish their cells at different times; at exit JAX waits for every process at a
# shutdown barrier and, past its timeout (300 s by default), aborts all of them, those still training included. A
# process that is done therefore waits for the others for up to a week.
SHUTDOWN_TIMEOUT_S = 7 * 24 * 3600


def initialize_multihost(shard: tuple[int, int] | None = None, **kwargs) -> tuple[int, int]:
    """Joins the multi-host job and returns this process's shard (i, n) of the sweep's cells.

    Calls `jax.distributed.initialize`, which reads the cluster from the environment on SLURM, Cloud TPU, Open
    MPI…; `kwargs` (`coordinator_address`, `num_processes`, `process_id`, or `shutdown_timeout_seconds` instead of
    `SHUTDOWN_TIMEOUT_S`) are passed through. Call it once, before any other jax work. `shard` (from --shard) is
    split further between the processes (`compose_shard`).
    """
    jax.distributed.initialize(**{"shutdown_timeout_seconds": SHUTDOWN_TIMEOUT_S, **kwargs})
    log.info("process %d of %d, %d local device(s)", jax.process_index(), jax.process_count(),
             jax.local_device_count())
    return compose_shard(shard, jax.process_index(), jax.process_count())


def process_shard(cells: Sequence[T], process_index: int | None = None,
                  process_count: int | None = None) -> list[T]:
    """The work items of this process: every `process_count`-th item from `process_index` on.

    Dealing round-robin spreads cells of similar cost (sweeps list them by M or by batch) evenly across hosts;
    the shards of all processes are disjoint and together hold every item once.
    """
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= index < count:
        raise ValueError(f"process_index={index} is outside [0, process_count={count})")
    return list(cells)[index::count]
