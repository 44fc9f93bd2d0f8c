"""make_mesh: axis names, inference of -1, device subsets, and errors."""

from __future__ import annotations

import pytest
from jax.sharding import AxisType

import nnx_sharding as ns


def test_default_is_data_parallel_over_every_device(eight_devices):
    mesh = ns.make_mesh(ns.MeshConfig())
    assert mesh.axis_names == ns.MESH_AXES == ("data", "fsdp", "sequence", "tensor")
    assert dict(mesh.shape) == {"data": 8, "fsdp": 1, "sequence": 1, "tensor": 1}
    assert set(mesh.devices.flat) == set(eight_devices)
    assert mesh.axis_types == (AxisType.Auto,) * 4


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (ns.MeshConfig(data=1, fsdp=-1), (1, 8, 1, 1)),
        (ns.MeshConfig(data=-1, tensor=2), (4, 1, 1, 2)),
        (ns.MeshConfig(data=2, fsdp=2, sequence=-1), (2, 2, 2, 1)),
        (ns.MeshConfig(data=2, fsdp=2, sequence=1, tensor=2), (2, 2, 1, 2)),
    ],
)
def test_sizes_and_inference(config, expected, eight_devices):
    mesh = ns.make_mesh(config)
    assert tuple(mesh.shape[axis] for axis in ns.MESH_AXES) == expected


def test_sub_mesh_over_given_devices(eight_devices):
    mesh = ns.make_mesh(ns.MeshConfig(data=1, fsdp=-1), devices=eight_devices[4:])
    assert mesh.shape["fsdp"] == 4
    assert set(mesh.devices.flat) == set(eight_devices[4:])


def test_data_axis_is_outermost_so_hosts_own_contiguous_batch_slices(eight_devices):
    mesh = ns.make_mesh(ns.MeshConfig(data=2, tensor=4))
    # jax.devices() lists devices process by process; rows of the data axis are contiguous.
    assert [device.id for device in mesh.devices[0].flat] == [d.id for d in eight_devices[:4]]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ns.MeshConfig(data=-1, fsdp=-1), "At most one mesh axis may be -1"),
        (ns.MeshConfig(data=3), "multiply to 3 but there are 8 devices"),
        (ns.MeshConfig(data=-1, fsdp=3), "Cannot infer mesh axis 'data'"),
        (ns.MeshConfig(data=0), "positive or -1"),
        (ns.MeshConfig(tensor=-2), "positive or -1"),
    ],
)
def test_bad_sizes_raise_with_the_fix(config, message, eight_devices):
    with pytest.raises(ValueError, match=message):
        ns.make_mesh(config)


def test_empty_device_list():
    with pytest.raises(ValueError, match="empty device list"):
        ns.make_mesh(ns.MeshConfig(), devices=[])
