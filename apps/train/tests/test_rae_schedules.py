"""RAE's learning-rate schedules (bytetriper/RAE ``src/utils/optim_utils.py``): stage 1 warms
up from 0 for one epoch, stage 2 holds 2e-4 for 40 epochs (``warmup_from_zero: false``)."""

import pytest
from train_testlib import load

from nnx_train.build import build_optimizer


def _rates(name, steps):
    config = load(name)
    _, schedule = build_optimizer(config)
    return [float(schedule(s)) for s in steps]


def test_stage2_holds_the_peak_through_its_warm_up_then_decays_linearly():
    epoch = 1_281_167 // 1024
    steps = (0, 20 * epoch, 40 * epoch, 420 * epoch, 800 * epoch)
    # float32 schedule arithmetic: 1e-6 relative.
    assert _rates("rae_stage2", steps) == pytest.approx([2e-4, 2e-4, 2e-4, 1.1e-4, 2e-5], rel=1e-6)


def test_stage1_ramps_from_zero_for_one_epoch_then_cosine():
    epoch = 1_281_167 // 512
    rates = _rates("rae_stage1", (0, epoch // 2, epoch, 16 * epoch))
    assert rates == pytest.approx([0.0, 1e-4, 2e-4, 2e-5], rel=1e-3, abs=1e-12)
