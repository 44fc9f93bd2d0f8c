"""initialize_distributed argument checks and process_info (the joined run is in
test_multiprocess.py)."""

from __future__ import annotations

import pytest

import nnx_sharding as ns


def test_partial_arguments_are_rejected_before_touching_the_runtime():
    with pytest.raises(ValueError, match=r"not \['num_processes', 'process_id'\]"):
        ns.initialize_distributed(coordinator_address="127.0.0.1:1234")
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\), got 2"):
        ns.initialize_distributed(
            coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2
        )


def test_process_info_of_a_single_process(eight_devices):
    info = ns.process_info()
    assert info == ns.ProcessInfo(
        process_index=0, process_count=1, local_device_count=8, device_count=8, platform="cpu"
    )
    assert info.is_coordinator
