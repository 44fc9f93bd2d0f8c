"""Bad input gets one line that names the problem and the fix: each test makes one mistake.

Every test compares the whole message with `EXPECTED` (``<dir>`` stands for the test's
temporary folder). ``docs/bad_inputs.md`` shows the same messages; `test_docs_table_is_these_tests`
parses that table and checks that each row names a test of this file and shows exactly its
message, so the page cannot drift from the code. Trainer errors are `TrainError`s, which the
command line prints as ``error: <message>`` with exit status 2 and no traceback
(`test_misspelled_config_key` checks that path end to end).

All cases are unit-level calls (no training step is compiled), so the file runs in seconds.
"""

import json
import os
import pathlib
import re
import types

import numpy as np
import pytest

import nnx_train
from nnx_train import build
from nnx_train.cli import load_config, main
from nnx_train.errors import TrainError

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "apps" / "train" / "configs" / "digits.py")
DOCS_TABLE = ROOT / "docs" / "bad_inputs.md"

EXPECTED = {
    "test_misspelled_config_key": (
        "error: Unknown config key in the overrides: 'num_step' Did you mean \"num_steps\" "
        'instead of "num_step"? Valid keys of config.train: batch_size, log_every, '
        "max_nonfinite_steps, nonfinite, num_steps. Overrides must name existing keys (see "
        "apps/train/README.md or the config file)."
    ),
    "test_unknown_config_section": (
        "Unknown config key in the overrides: 'trian' Did you mean \"train\" instead of "
        '"trian"? Valid keys of config: autoencoder, checkpoint, data, distributed, ema, eval, '
        "guidance, loader, logging, model, name, objective, optimizer, sampler, samples, "
        "schedule, seed, sharding, time_shift, train. Overrides must name existing keys (see "
        "apps/train/README.md or the config file)."
    ),
    "test_config_value_of_the_wrong_type": (
        "Bad command line: flag --config.train.num_steps=abc: invalid literal for int() with "
        "base 10: 'abc'. Give each --config.<key>=<value> a value of the type the config "
        "file sets (see apps/train/README.md)."
    ),
    # <DiT arguments>: the sorted keyword arguments of nnx_nets.DiT (they grow with the nets).
    "test_unknown_model_argument": (
        "model: DiT takes no argument(s) ['num_class']; its arguments are <DiT arguments>."
    ),
    "test_image_size_the_model_cannot_take": (
        "The data has 8x8 inputs but the model is built for 16x16 (model.input_size); set "
        "it to 8 (or change the data)."
    ),
    "test_patch_size_that_does_not_divide_the_image": (
        "Image size 8x8 is not divisible by model.patch_size=3; choose a patch size that "
        "divides it."
    ),
    "test_channels_the_model_does_not_take": (
        "The data has 3 channels but the model takes 1 (model.in_channels); set it to 3."
    ),
    "test_more_classes_than_the_model_has": (
        "The data has 12 classes but model.num_classes=10; labels would be out of range. Set "
        "model.num_classes to at least the data's classes."
    ),
    "test_unknown_solver": (
        "Unknown sampler.solver='rk4'; valid names: euler, heun, euler_maruyama, euler_jump, "
        "dpm_solver_2m, dpm_solver_3m, dpm_solver_3m_reference, heun_repa, edm_stochastic, "
        "ddpm, ddim."
    ),
    "test_unknown_objective": (
        "Unknown objective.name='vdm'; valid names: interpolant, ddpm, meanflow, edm, edm2, "
        "repa, rae_decoder, diffusion_forcing, dmd2, sct, scd, self_forcing."
    ),
    "test_sampler_key_a_few_step_student_ignores": (
        "sampler.num_steps=4 is ignored by the dmd2 recipe (its few-step sampler reads only "
        "objective.generator_steps); keep --config.sampler.num_steps=32 and set "
        "objective.generator_steps instead."
    ),
    "test_sampler_key_the_recipe_ignores": (
        "sampler.solver='heun' is ignored by the meanflow recipe (it samples with euler_jump "
        "on a uniform grid, unguided); set --config.sampler.solver='euler_jump' or choose a "
        "setting that reads it."
    ),
    "test_wrong_compute_dtype": (
        "Unknown model.dtype='float64'; valid names: float32, bfloat16, float16."
    ),
    "test_missing_weights_file": (
        "autoencoder.weights='<dir>/vae.safetensors': the SD-VAE weights file is missing. "
        "Pass the published file with --config.autoencoder.weights=/path/to/file "
        "(.safetensors or .pt)."
    ),
    "test_corrupt_weights_file": (
        "objective.encoder.weights='<dir>/dinov2.safetensors' cannot fill the DINOv2 "
        "network: cannot read '<dir>/dinov2.safetensors' as safetensors (Error while "
        "deserializing header: invalid header length); the file is truncated or not a "
        "safetensors file: download it again. Pass the published DINOv2 weights "
        "(.safetensors or .pt) with --config.objective.encoder.weights=/path/to/file."
    ),
    "test_checkpoint_of_another_model": (
        "The checkpoint <dir>/1 was written by another model ('DiT:interpolant'; this run "
        "builds 'DiT:interpolant'): mis-shaped: params/w: checkpoint [8, 4] float32 vs model "
        "[16, 4] float32. Use a new --workdir or the config that wrote it."
    ),
    "test_weights_file_path_that_does_not_exist": (
        "checkpoint file '<dir>/DiT-XL-2-256x256.pt' does not exist; check the path (the "
        "published files are listed in the nnx-weightconv README)"
    ),
    "test_nan_loss_with_the_stop_policy": (
        "The loss or the gradients became NaN/Inf by step 7 (1 step(s)); their updates were "
        "not applied. To continue: lower optimizer.learning_rate, set "
        "optimizer.grad_clip_norm (e.g. 1.0), or train with model.dtype='float32', or set "
        "train.nonfinite='skip'."
    ),
    "test_batch_that_does_not_divide_the_mesh": (
        "train.batch_size=12 does not divide over the 8 batch slices of the mesh (data x "
        "fsdp = 8 x 1); use a multiple of 8 or change sharding.*."
    ),
    "test_mesh_that_does_not_match_the_devices": (
        "sharding: Mesh axes data=2 x fsdp=2 x sequence=1 x tensor=1 multiply to 4 but there "
        "are 8 devices; make the product 8, or set one axis to -1 to infer it. Set the sizes "
        "with --config.sharding.data, .fsdp, .sequence and .tensor."
    ),
    "test_mesh_axis_that_cannot_be_inferred": (
        "sharding: Cannot infer mesh axis 'data': the other axes of data=-1 x fsdp=3 x "
        "sequence=1 x tensor=1 multiply to 3, which does not divide the 8 devices; choose "
        "sizes whose product divides 8. Set the sizes with --config.sharding.data, .fsdp, "
        ".sequence and .tensor."
    ),
    "test_no_checkpoint_kept": (
        "checkpoint.keep=0: at least one checkpoint must be kept; set checkpoint.keep to 1 or more."
    ),
    "test_unknown_wandb_mode": (
        "logging.wandb_mode='cloud'; use one of ('online', 'offline', 'disabled')."
    ),
    "test_unwritable_workdir": (
        "The workdir <dir>/file/run is not writable (Not a directory); choose another --workdir."
    ),
    "test_workdir_on_a_bucket": (
        "--workdir='gs://bucket/run' must be a local folder (logs and pictures go there); "
        "put checkpoints on a bucket with --config.checkpoint.directory=gs://bucket/prefix."
    ),
    "test_corrupt_latent_file": (
        "Corrupt latent file 00000/img00000002.npy in <dir> (ValueError: we only support "
        "format version (1,0), (2,0), and (3,0), not (32, 103)). Delete it and re-run "
        "tools/extract_latents.py, which rewrites missing files."
    ),
    "test_label_out_of_range": (
        "Label out of range in <dir>/dataset.json: 00000/img00000002.npy has label 7, but "
        "data.num_classes=3 allows 0..2 (1 such entries). Fix the labels or set "
        "data.num_classes and model.num_classes."
    ),
    "test_empty_dataset": (
        "Latent dataset <dir> is empty (dataset.json lists no files). Point data.path at a "
        "dataset written by tools/extract_latents.py."
    ),
    "test_empty_image_folder": (
        "Image folder '<dir>' is empty: no ('.jpg', '.jpeg', '.png', '.bmp', '.webp', "
        "'.tif', '.tiff') files in class sub-folders (expected root/<class name>/<image "
        "files>)."
    ),
    "test_batch_larger_than_the_dataset": (
        "SyntheticSource(shape=(1, 1, 1), len=4) has only 4 records, fewer than its "
        "batch of 8; lower train.batch_size or use more data."
    ),
    "test_reference_statistics_without_statistics": (
        "'<dir>/stats.npz' holds none of mu/sigma, mu_s/sigma_s or arr_0 (keys: ['cov', "
        "'mean']); expected an ADM or pytorch-fid statistics file"
    ),
    "test_time_grid_that_runs_the_wrong_way": (
        "UniformGrid needs 0 <= t_end < t_start <= 1; got t_start=0.2, t_end=0.8. Time runs "
        "from noise (1) down to data (0)."
    ),
}


def _check(error: BaseException, name: str, tmp_path=None, replace=None) -> None:
    """The message of ``error`` is one line and exactly ``EXPECTED[name]``."""
    message = str(error)
    expected = EXPECTED[name]
    if tmp_path is not None:
        expected = expected.replace("<dir>", str(tmp_path))
    for placeholder, value in (replace or {}).items():
        expected = expected.replace(placeholder, value)
    assert "\n" not in message and "Traceback" not in message
    assert message == expected


def _trainer_error(call) -> TrainError:
    with pytest.raises(TrainError) as info:
        call()
    return info.value


def _digits(*overrides: str):
    return load_config(DIGITS, overrides)


# ------------------------------------------------------------------------- config and model


def test_misspelled_config_key(tmp_path, capsys):
    status = main(
        ["train", f"--workdir={tmp_path}", "--config.train.num_step=3"], default_config=DIGITS
    )
    err = capsys.readouterr().err
    assert status == 2 and err.endswith("\n") and err.count("\n") == 1
    _check(ValueError(err.rstrip("\n")), "test_misspelled_config_key")


def test_unknown_config_section():
    _check(_trainer_error(lambda: _digits("trian.num_steps=3")), "test_unknown_config_section")


def test_config_value_of_the_wrong_type():
    error = _trainer_error(lambda: _digits("train.num_steps=abc"))
    _check(error, "test_config_value_of_the_wrong_type")


def test_unknown_model_argument():
    config = _digits()
    with config.unlocked():
        config.model.num_class = 10
    error = _trainer_error(lambda: build.build_model_factory(config.model, seed=0))
    import inspect

    import nnx_nets

    signature = inspect.signature(nnx_nets.DiT.__init__)
    arguments = sorted(set(signature.parameters) - {"self", "rngs"})
    _check(error, "test_unknown_model_argument", replace={"<DiT arguments>": str(arguments)})


def test_image_size_the_model_cannot_take():
    config = _digits("model.input_size=16")
    error = _trainer_error(lambda: build.check_data_fits_model((8, 8, 1), 10, config))
    _check(error, "test_image_size_the_model_cannot_take")


def test_patch_size_that_does_not_divide_the_image():
    config = _digits("model.patch_size=3")
    error = _trainer_error(lambda: build.check_data_fits_model((8, 8, 1), 10, config))
    _check(error, "test_patch_size_that_does_not_divide_the_image")


def test_channels_the_model_does_not_take():
    config = _digits()
    error = _trainer_error(lambda: build.check_data_fits_model((8, 8, 3), 10, config))
    _check(error, "test_channels_the_model_does_not_take")


def test_more_classes_than_the_model_has():
    config = _digits()
    error = _trainer_error(lambda: build.check_data_fits_model((8, 8, 1), 12, config))
    _check(error, "test_more_classes_than_the_model_has")


def test_unknown_solver():
    config = _digits("sampler.solver=rk4")
    _check(_trainer_error(lambda: build.build_solver(config.sampler)), "test_unknown_solver")


def test_unknown_objective():
    config = _digits("objective.name=vdm")
    error = _trainer_error(lambda: build.build_task(config, data_shape=(8, 8, 1)))
    _check(error, "test_unknown_objective")


def test_sampler_key_the_recipe_ignores():
    config = load_config(
        str(ROOT / "apps/train/configs/meanflow_b2.py:tiny"), ["sampler.solver=heun"]
    )
    error = _trainer_error(lambda: build.build_task(config, data_shape=(8, 8, 4)))
    _check(error, "test_sampler_key_the_recipe_ignores")


def test_sampler_key_a_few_step_student_ignores():
    config = load_config(str(ROOT / "apps/train/configs/dmd2_digits.py"), ["sampler.num_steps=4"])
    error = _trainer_error(lambda: build.build_task(config, data_shape=(8, 8, 1)))
    _check(error, "test_sampler_key_a_few_step_student_ignores")


def test_wrong_compute_dtype():
    _check(_trainer_error(lambda: build.dtype_from_name("float64")), "test_wrong_compute_dtype")


# ------------------------------------------------------------------------ weights, checkpoints


def test_missing_weights_file(tmp_path):
    config = _digits("autoencoder.name=sdvae", f"autoencoder.weights={tmp_path}/vae.safetensors")
    error = _trainer_error(lambda: build.build_autoencoder(config))
    _check(error, "test_missing_weights_file", tmp_path)


def test_corrupt_weights_file(tmp_path):
    path = tmp_path / "dinov2.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")  # header length, bad JSON
    # The loader every pretrained network goes through (REPA / RAE encoders, SD-VAE); the
    # file is read before the module is touched, so no network is built here.
    error = _trainer_error(
        lambda: build.load_pretrained(
            None, str(path), loader="dinov2", key="objective.encoder.weights", what="DINOv2"
        )
    )
    _check(error, "test_corrupt_weights_file", tmp_path)


def test_checkpoint_of_another_model(tmp_path):
    import jax.numpy as jnp

    from nnx_train.checkpointing import Checkpointer
    from nnx_train.data import SyntheticSource, make_iterator
    from nnx_train.state import TrainState

    def state(width):
        params = {"w": jnp.ones((width, 4))}
        return TrainState(
            step=jnp.int32(1),
            params=params,
            rest={},
            opt_state={},
            ema={},
            key=jnp.zeros(2, jnp.uint32),
            num_nonfinite=jnp.int32(0),
        )

    def iterator():
        source = SyntheticSource(shape=(1, 1, 1), num_examples=4)
        return make_iterator(source, global_batch_size=2, seed=0, read_threads=0)

    checkpointer = Checkpointer(str(tmp_path), keep=1, model_name="DiT:interpolant")
    checkpointer.save(state(8), iterator())
    checkpointer.close()
    other = Checkpointer(str(tmp_path), keep=1, model_name="DiT:interpolant")
    error = _trainer_error(lambda: other.restore(state(16), iterator()))
    other.close()
    _check(error, "test_checkpoint_of_another_model", tmp_path)


def test_weights_file_path_that_does_not_exist(tmp_path):
    from nnx_weightconv import read_state_dict

    with pytest.raises(FileNotFoundError) as info:
        read_state_dict(tmp_path / "DiT-XL-2-256x256.pt")
    _check(info.value, "test_weights_file_path_that_does_not_exist", tmp_path)


# ------------------------------------------------------------------------------- training


def test_nan_loss_with_the_stop_policy():
    import jax.numpy as jnp

    from nnx_train.run import check_nonfinite

    run = types.SimpleNamespace(
        config=_digits("train.nonfinite=stop"),
        state=types.SimpleNamespace(num_nonfinite=jnp.int32(1)),
    )
    progress = types.SimpleNamespace(write=print)
    with pytest.raises(nnx_train.NonFiniteError) as info:
        check_nonfinite(run, 7, progress)
    _check(info.value, "test_nan_loss_with_the_stop_policy")


def test_batch_that_does_not_divide_the_mesh(tmp_path):
    from nnx_train.train import train

    config = _digits("train.batch_size=12", "sharding.data=-1")
    _check(
        _trainer_error(lambda: train(config, str(tmp_path))),
        "test_batch_that_does_not_divide_the_mesh",
    )


def test_mesh_that_does_not_match_the_devices():
    config = _digits("sharding.data=2", "sharding.fsdp=2")  # 4 of the 8 fake devices
    _check(
        _trainer_error(lambda: build.build_mesh_and_rules(config.sharding)),
        "test_mesh_that_does_not_match_the_devices",
    )


def test_mesh_axis_that_cannot_be_inferred():
    config = _digits("sharding.data=-1", "sharding.fsdp=3")
    _check(
        _trainer_error(lambda: build.build_mesh_and_rules(config.sharding)),
        "test_mesh_axis_that_cannot_be_inferred",
    )


def test_no_checkpoint_kept(tmp_path):
    from nnx_train.checkpointing import Checkpointer

    error = _trainer_error(lambda: Checkpointer(str(tmp_path), keep=0))
    _check(error, "test_no_checkpoint_kept")


def test_unknown_wandb_mode():
    from nnx_train.metrics_log import wandb_mode

    _check(_trainer_error(lambda: wandb_mode("cloud")), "test_unknown_wandb_mode")


def test_unwritable_workdir(tmp_path):
    from nnx_train.train import prepare_workdir

    (tmp_path / "file").write_text("not a folder")
    error = _trainer_error(lambda: prepare_workdir(str(tmp_path / "file" / "run")))
    _check(error, "test_unwritable_workdir", tmp_path)


def test_workdir_on_a_bucket():
    from nnx_train.train import prepare_workdir

    _check(_trainer_error(lambda: prepare_workdir("gs://bucket/run")), "test_workdir_on_a_bucket")


# ----------------------------------------------------------------------------------- data


def _latents(root, labels=(0, 1, 2, 0)):
    os.makedirs(root / "00000", exist_ok=True)
    entries = []
    for i, label in enumerate(labels):
        name = f"00000/img{i:08d}.npy"
        np.save(root / name, np.zeros((8, 2, 2), np.float32))
        entries.append([name, label])
    (root / "dataset.json").write_text(json.dumps({"labels": entries}))


def _read_all(source):
    for i in range(len(source)):
        source[i]


def test_corrupt_latent_file(tmp_path):
    from nnx_train.data import LatentSource

    _latents(tmp_path)
    (tmp_path / "00000" / "img00000002.npy").write_bytes(b"\x93NUMPY garbage")
    source = LatentSource(path=str(tmp_path), num_classes=3, posterior="sample")
    _check(_trainer_error(lambda: _read_all(source)), "test_corrupt_latent_file", tmp_path)


def test_label_out_of_range(tmp_path):
    from nnx_train.data import LatentSource

    _latents(tmp_path, labels=(0, 1, 7, 0))
    error = _trainer_error(
        lambda: LatentSource(path=str(tmp_path), num_classes=3, posterior="sample")
    )
    _check(error, "test_label_out_of_range", tmp_path)


def test_empty_dataset(tmp_path):
    from nnx_train.data import LatentSource

    _latents(tmp_path, labels=())
    error = _trainer_error(
        lambda: LatentSource(path=str(tmp_path), num_classes=3, posterior="sample")
    )
    _check(error, "test_empty_dataset", tmp_path)


def test_empty_image_folder(tmp_path):
    from nnx_train.data import ImageFolderSource

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("no images here")
    error = _trainer_error(
        lambda: ImageFolderSource(path=str(tmp_path), resolution=8, num_classes=1)
    )
    _check(error, "test_empty_image_folder", tmp_path)


def test_batch_larger_than_the_dataset():
    from nnx_train.data import SyntheticSource, make_iterator

    source = SyntheticSource(shape=(1, 1, 1), num_examples=4)
    error = _trainer_error(lambda: make_iterator(source, global_batch_size=8, seed=0))
    _check(error, "test_batch_larger_than_the_dataset")


# ------------------------------------------------------------------------ other packages


def test_reference_statistics_without_statistics(tmp_path):
    from nnx_fid import load_reference

    np.savez(tmp_path / "stats.npz", mean=np.zeros(3), cov=np.eye(3))
    with pytest.raises(ValueError) as info:
        load_reference(tmp_path / "stats.npz")
    _check(info.value, "test_reference_statistics_without_statistics", tmp_path)


def test_time_grid_that_runs_the_wrong_way():
    from nnx_samplers import UniformGrid

    with pytest.raises(ValueError) as info:
        UniformGrid(num_steps=4, t_start=0.2, t_end=0.8)
    _check(info.value, "test_time_grid_that_runs_the_wrong_way")


# --------------------------------------------------------------------------- the docs table


def _table_rows() -> list[list[str]]:
    rows = []
    for line in DOCS_TABLE.read_text().splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].lower() == "bad input":
            continue
        rows.append(cells)
    return rows


def test_docs_table_is_these_tests():
    rows = _table_rows()
    assert len(rows) >= 20
    this_file = pathlib.Path(__file__).resolve().relative_to(ROOT).as_posix()
    named = set()
    for bad_input, message, test in rows:
        assert bad_input, test
        path, _, name = test.strip("`").partition("::")
        if path in ("tests/test_bad_values.py", "tests/test_bad_tool_inputs.py"):
            continue  # checked by that file
        assert path == this_file and name in EXPECTED, test
        assert name in globals() and callable(globals()[name]), name
        assert re.fullmatch(r"`[^`]+`", message), message
        assert message.strip("`") == EXPECTED[name], name
        named.add(name)
    assert named == set(EXPECTED), sorted(set(EXPECTED) - named)
