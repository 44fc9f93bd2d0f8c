"""Bad input to the tools, one line each, found before any network is loaded:
``tools/evaluate_samples.py`` (sample files that are not uint8 NHWC RGB with 2 or more images,
reference statistics of another width or with NaN) and ``tools/convert_checkpoint.py`` (an
existing output, NaN weights). Rows of ``docs/bad_inputs.md`` as in
``tests/test_bad_inputs.py``; `test_docs_rows_of_this_file` checks them.
"""

import importlib.util
import os
import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS_TABLE = ROOT / "docs" / "bad_inputs.md"

EXPECTED = {
    "test_float_samples": (
        "<dir>/samples.npz: arr_0 has shape (4, 8, 8, 3) and dtype float32; expected uint8 "
        "pixels in [0, 255] (from [-1, 1] floats: np.clip(np.round((x + 1) * 127.5), 0, "
        "255).astype(np.uint8))"
    ),
    "test_grey_samples": (
        "<dir>/samples.npz: arr_0 has shape (4, 8, 8); expected RGB images (N, H, W, 3) "
        "(grey images: np.repeat(x[..., None], 3, axis=-1) for (N, H, W))"
    ),
    "test_nchw_samples": (
        "<dir>/samples.npz: arr_0 has shape (4, 3, 8, 8), which looks like NCHW; save NHWC "
        "images (x.transpose(0, 2, 3, 1))"
    ),
    "test_empty_samples": (
        "<dir>/samples.npz: arr_0 has shape (0, 8, 8, 3): 0 image(s); FID needs at least 2 "
        "samples (50,000 for FID-50k)"
    ),
    "test_single_sample": (
        "<dir>/samples.npz: arr_0 has shape (1, 8, 8, 3): 1 image(s); FID needs at least 2 "
        "samples (50,000 for FID-50k)"
    ),
    "test_samples_not_an_npz": (
        "<dir>/samples.npz is not an .npz file (a zip written by numpy.savez); save the "
        "samples with np.savez(path, arr_0=uint8 (N, H, W, 3) images)"
    ),
    "test_reference_of_another_width": (
        "<dir>/ref.npz: the FID statistics are 64-d, not the 2048-d Inception features this "
        "tool extracts; use a reference written for Inception (ADM's VIRTUAL_*.npz or "
        "tools/fid_reference_stats.py)"
    ),
    "test_reference_with_nan": (
        "<dir>/ref.npz: the FID statistics hold NaN/Inf values; recompute the reference "
        "(tools/fid_reference_stats.py)"
    ),
    "test_convert_to_an_existing_output": (
        "error: the output <dir>/out exists; pass --force to replace it, or choose another "
        "output folder"
    ),
    "test_convert_nan_weights": (
        "error: <dir>/dit.safetensors: NaN/Inf weights in x_embedder/proj/kernel; the "
        "checkpoint diverged or is damaged: convert another one (nothing was written)"
    ),
}


def _check(error: BaseException, name: str, tmp_path=None) -> None:
    """The message of ``error`` is one line and exactly ``EXPECTED[name]``."""
    message, expected = str(error), EXPECTED[name]
    if tmp_path is not None:
        expected = expected.replace("<dir>", str(tmp_path))
    assert "\n" not in message and "Traceback" not in message
    assert message == expected


# ----------------------------------------------------------------------------------- tools


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluate(tmp_path, samples=None, reference=None) -> SystemExit:
    """Runs tools/evaluate_samples.py on ``samples`` (an array saved as arr_0, or ``None``:
    the file is already there) against ``reference`` (``{key: array}``; ``None``: no file,
    as the samples are checked first). ``--inception`` names no file: every input must be
    refused before the network is loaded."""
    if samples is not None:
        np.savez(tmp_path / "samples.npz", arr_0=samples)
    if reference is not None:
        np.savez(tmp_path / "ref.npz", **reference)
    argv = [str(tmp_path / "ref.npz"), str(tmp_path / "samples.npz")]
    with pytest.raises(SystemExit) as info:
        _tool("evaluate_samples").main([*argv, "--inception", str(tmp_path / "absent.pth")])
    return info.value


def _images(*shape, dtype=np.uint8):
    return np.zeros(shape, dtype)


def test_float_samples(tmp_path):
    error = _evaluate(tmp_path, _images(4, 8, 8, 3, dtype=np.float32))
    _check(error, "test_float_samples", tmp_path)


def test_grey_samples(tmp_path):
    _check(_evaluate(tmp_path, _images(4, 8, 8)), "test_grey_samples", tmp_path)


def test_nchw_samples(tmp_path):
    _check(_evaluate(tmp_path, _images(4, 3, 8, 8)), "test_nchw_samples", tmp_path)


def test_empty_samples(tmp_path):
    _check(_evaluate(tmp_path, _images(0, 8, 8, 3)), "test_empty_samples", tmp_path)


def test_single_sample(tmp_path):
    _check(_evaluate(tmp_path, _images(1, 8, 8, 3)), "test_single_sample", tmp_path)


def test_samples_not_an_npz(tmp_path):
    np.save(tmp_path / "samples.npy", _images(4, 8, 8, 3))
    os.rename(tmp_path / "samples.npy", tmp_path / "samples.npz")  # a .npy named .npz
    _check(_evaluate(tmp_path), "test_samples_not_an_npz", tmp_path)


def test_reference_of_another_width(tmp_path):
    reference = {"mu": np.zeros(64), "sigma": np.eye(64)}
    error = _evaluate(tmp_path, _images(4, 8, 8, 3), reference)
    _check(error, "test_reference_of_another_width", tmp_path)


def test_reference_with_nan(tmp_path):
    mu = np.zeros(2048)
    mu[5] = np.nan
    error = _evaluate(tmp_path, _images(4, 8, 8, 3), {"mu": mu, "sigma": np.eye(2048)})
    _check(error, "test_reference_with_nan", tmp_path)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_samples_are_read_in_batches_equal_to_the_array(tmp_path, save):
    images = np.random.default_rng(0).integers(0, 256, (7, 4, 5, 3), dtype=np.uint8)
    save(tmp_path / "samples.npz", arr_0=images)
    samples = _tool("evaluate_samples").SampleFile(tmp_path / "samples.npz")
    batches = list(samples.batches(3))
    assert [len(b) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(batches), images)


DIT_FLAGS = "--arch dit --input-size 8 --in-channels 3 --hidden-size 32 --depth 1 "
DIT_FLAGS += "--num-heads 2 --patch-size 2 --num-classes 5"


def _dit_file(tmp_path, nan: bool) -> pathlib.Path:
    import safetensors.numpy
    from flax import nnx

    from nnx_nets import DiT
    from nnx_weightconv import export_state_dict
    from nnx_weightconv.specs.dit import dit_rules

    dit = DiT(
        input_size=8,
        patch_size=2,
        in_channels=3,
        hidden_size=32,
        depth=1,
        num_heads=2,
        num_classes=5,
        rngs=nnx.Rngs(0),
    )
    state_dict = {k: np.array(v) for k, v in export_state_dict(dit, dit_rules(dit)).items()}
    if nan:
        state_dict["x_embedder.proj.weight"][0, 0, 0, 0] = np.nan
    path = tmp_path / "dit.safetensors"
    safetensors.numpy.save_file(state_dict, path)
    return path


def test_convert_to_an_existing_output(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    absent = tmp_path / "absent.pt"  # never opened: the output is checked first
    status = _tool("convert_checkpoint").main(
        [str(absent), str(tmp_path / "out"), *DIT_FLAGS.split()]
    )
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    _check(ValueError(err.rstrip("\n")), "test_convert_to_an_existing_output", tmp_path)


def test_convert_nan_weights(tmp_path, capsys):
    path = _dit_file(tmp_path, nan=True)
    status = _tool("convert_checkpoint").main(
        [str(path), str(tmp_path / "out"), *DIT_FLAGS.split()]
    )
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and not (tmp_path / "out").exists()
    _check(ValueError(err.rstrip("\n")), "test_convert_nan_weights", tmp_path)


# --------------------------------------------------------------------------- the docs table


def _table_rows() -> list[list[str]]:
    rows = []
    for line in DOCS_TABLE.read_text().splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].lower() != "bad input":
            rows.append(cells)
    return rows


def test_docs_rows_of_this_file():
    rows = _table_rows()
    assert len(rows) >= 60
    this_file = pathlib.Path(__file__).resolve().relative_to(ROOT).as_posix()
    named = set()
    for bad_input, message, test in rows:
        path, _, name = test.strip("`").partition("::")
        if path != this_file:
            continue
        assert bad_input and name in EXPECTED, test
        assert name in globals() and callable(globals()[name]), name
        assert re.fullmatch(r"`[^`]+`", message), message
        assert message.strip("`") == EXPECTED[name], name
        named.add(name)
    assert named == set(EXPECTED), sorted(set(EXPECTED) - named)
