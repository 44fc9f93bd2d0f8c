"""The app end to end on tiny configs: published-format files -> sampling -> metrics, resume,
determinism, reconstruction, and the named errors of missing or mismatched files.

The "published" checkpoints here are written by the test in the published formats (torch.save
zips, ``{"ema": ...}`` stage-2 checkpoints, ``stat.pt`` with ``mean=None``, an ADM reference
``.npz``) from random tiny networks, so the whole loading path runs without any download.
"""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from PIL import Image
from safetensors.numpy import save_file

from nnx_fid import export_inception_state_dict, to_uint8
from nnx_samplers import ConditionalField, Euler, ShiftedGrid, UniformGrid, sample
from nnx_weightconv import dit_dh_rules, export_rae_decoder, export_state_dict
from rae_eval.build import build_grid, build_solver
from rae_eval.checkpoints import CheckpointMismatchError, MissingCheckpointError
from rae_eval.metrics import build_inception
from rae_eval.pipeline import build_autoencoder, build_stage2, latent_shape, required_files
from rae_eval.run import run, synthetic_reference
from rae_eval.sampling import data_mesh, make_generate_batch
from rae_eval.shards import FingerprintMismatchError, ShardStore

torch.set_num_threads(1)


def _torch_save(path, tree):
    path.parent.mkdir(parents=True, exist_ok=True)
    convert = lambda v: (
        torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
    )
    torch.save(
        {
            k: ({kk: convert(vv) for kk, vv in v.items()} if isinstance(v, dict) else convert(v))
            for k, v in tree.items()
        },
        path,
    )


def _published_tiny(load_config, root):
    """Random tiny networks, written to ``root`` in the published file formats."""
    config = load_config("tiny", "autoguidance")
    config.progress = False
    autoencoder = build_autoencoder(config, {}, with_encoder=False)
    model = build_stage2(config, {}, "stage2")
    guide = build_stage2(config, {}, "guide")

    _torch_save(root / "decoders/model.pt", export_rae_decoder(autoencoder.decoder))
    var_chw = np.asarray(autoencoder.normalizer.var[...]).transpose(2, 0, 1)
    _torch_save(root / "stats/stat.pt", {"mean": None, "var": var_chw})
    stage2 = export_state_dict(model, dit_dh_rules(model))
    decoy = {k: np.zeros_like(v) for k, v in stage2.items()}  # "model" must not be used
    _torch_save(root / "DiTs/XL/stage2_model.pt", {"model": decoy, "ema": stage2, "epoch": 3})
    _torch_save(
        root / "DiTs/S/stage2_model.pt", {"ema": export_state_dict(guide, dit_dh_rules(guide))}
    )
    inception = build_inception(None, random_seed=11)
    save_file(export_inception_state_dict(inception), str(root / "fid_inception.safetensors"))
    reference = synthetic_reference(8, config.image_size, seed=5).images
    rng = np.random.default_rng(0)
    # An ADM batch: stored FID / sFID statistics (rank 3, so that nnx-fid's Frechet distance
    # solves a 3 x 3 eigenproblem instead of a 2048 x 2048 one) and images for precision/recall.
    pool, spatial = 0.1 * rng.normal(size=(2048, 3)), 0.1 * rng.normal(size=(2023, 3))
    np.savez(
        root / "reference.npz",
        arr_0=reference,
        mu=rng.normal(size=2048),
        sigma=pool @ pool.T,
        mu_s=rng.normal(size=2023),
        sigma_s=spatial @ spatial.T,
    )
    published = load_config("tiny", "autoguidance")
    published.progress = False
    published.weights = "published"
    published.checkpoints.directory = str(root)
    for role, path in (
        ("decoder", "decoders/model.pt"),
        ("latent_stats", "stats/stat.pt"),
        ("stage2", "DiTs/XL/stage2_model.pt"),
        ("guide", "DiTs/S/stage2_model.pt"),
        ("inception", "fid_inception.safetensors"),
        ("reference_batch", "reference.npz"),
    ):
        published.checkpoints[role] = {"path": path, "url": f"hf://owner/repo/{path}"}
    return config, published, (autoencoder, model, guide)


@pytest.fixture(scope="module")
def generation(load_config, tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    random_config, config, networks = _published_tiny(load_config, root)
    workdir = tmp_path_factory.mktemp("run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Inception file is not the published one (SHA-256)
        first = run(config, workdir)
        store = ShardStore(workdir / "samples", num_samples=8, shard_size=4)
        samples, labels = store.read_all()
        store.path(1).unlink()
        sample_only = config.copy_and_resolve_references()
        sample_only.task = "sample"  # resume without recomputing the metrics
        second = run(sample_only, workdir)
    resumed, _ = store.read_all()
    return {
        "config": config,
        "random_config": random_config,
        "networks": networks,
        "workdir": workdir,
        "first": first,
        "second": second,
        "samples": samples,
        "labels": labels,
        "resumed": resumed,
    }


def test_generation_outputs(generation):
    samples, labels, workdir = generation["samples"], generation["labels"], generation["workdir"]
    assert samples.shape == (8, 16, 16, 3) and samples.dtype == np.uint8
    assert (
        labels.dtype == np.int32 and sorted(np.bincount(labels, minlength=10)) == [0, 0] + [1] * 8
    )
    assert samples.std() > 1.0  # random networks still draw something non-constant
    metrics = json.loads((workdir / "results_generate.json").read_text())["metrics"]
    for name in ("fid", "sfid", "inception_score", "precision", "recall"):
        assert isinstance(metrics[name], float) and np.isfinite(metrics[name]), name
    assert metrics["fid"] > 0 and metrics["num_samples"] == 8 and metrics["front_end"] == "tf1"
    with np.load(workdir / "samples.npz") as data:
        np.testing.assert_array_equal(data["arr_0"], samples)
        np.testing.assert_array_equal(data["arr_1"], labels)
    grid = np.asarray(Image.open(workdir / "samples_grid.png"))
    assert grid.shape == (2 * 18 + 2, 4 * 18 + 2, 3)  # 8 images, 4 columns, 2-px gutters
    provenance = json.loads((workdir / "provenance.json").read_text())
    assert provenance["config"]["guidance"]["name"] == "autoguidance"


def test_published_files_load_exactly(generation):
    # The samples drawn from the files equal those of the in-memory networks they were written
    # from (same compiled program, same seed): the torch-free reader and the specs are exact.
    autoencoder, model, guide = generation["networks"]
    config = generation["random_config"]
    generate = make_generate_batch(
        autoencoder=autoencoder,
        model=model,
        guide=guide,
        guidance=config.guidance,
        solver=build_solver(config.sampler),
        grid=build_grid(config.sampler, config.time_shift),
        latent_shape=latent_shape(config),
        null_label=config.num_classes,
        seed=config.seed,
        mesh=data_mesh(),
    )
    np.testing.assert_array_equal(
        generate(np.arange(8), generation["labels"]), generation["samples"]
    )
    other_seed = make_generate_batch(
        autoencoder=autoencoder,
        model=model,
        guide=guide,
        guidance=config.guidance,
        solver=build_solver(config.sampler),
        grid=build_grid(config.sampler, config.time_shift),
        latent_shape=latent_shape(config),
        null_label=config.num_classes,
        seed=config.seed + 1,
        mesh=data_mesh(),
    )
    assert np.mean(other_seed(np.arange(8), generation["labels"]) != generation["samples"]) > 0.5


def test_resume_recomputes_only_missing_shards_and_is_deterministic(generation):
    first, second = generation["first"], generation["second"]
    assert first["generated_shards"] == 2 and first["skipped_shards"] == 0
    assert second["generated_shards"] == 1 and second["skipped_shards"] == 1
    # Same seed, same samples: the regenerated shard is bit-identical.
    np.testing.assert_array_equal(generation["resumed"], generation["samples"])
    assert second["metrics"] is None and second["task"] == "sample"


def test_changed_setup_refuses_to_resume(generation):
    config = generation["config"].copy_and_resolve_references()
    config.guidance.scale = 2.0
    with pytest.raises(FingerprintMismatchError, match="guidance"):
        run(config, generation["workdir"])


def test_mismatched_checkpoint_files_are_named(generation, tmp_path):
    config = generation["config"].copy_and_resolve_references()
    files = required_files(config)
    # A stage-2 file missing a key and with a mis-shaped one.
    state = dict(torch.load(files["stage2"].path)["ema"])
    del state["y_embedder.embedding_table.weight"]
    state["final_layer.linear.bias"] = torch.zeros(5)
    broken = tmp_path / "broken.pt"
    torch.save({"ema": state}, broken)
    config.checkpoints.stage2 = {"path": str(broken), "url": "hf://o/r/DiTDH-XL/stage2_model.pt"}
    with pytest.raises(CheckpointMismatchError) as error:
        build_stage2(config, required_files(config), "stage2")
    message = str(error.value)
    assert str(broken) in message and "stage2 checkpoint" in message
    assert "y_embedder.embedding_table.weight" in message
    assert "final_layer.linear.bias" in message and "(5,)" in message
    # Statistics of the wrong latent shape.
    stats = tmp_path / "stat.pt"
    torch.save({"mean": None, "var": torch.ones(8, 4, 4)}, stats)
    config.checkpoints.latent_stats = {"path": str(stats), "url": "hf://o/r/stat.pt"}
    with pytest.raises(CheckpointMismatchError, match=r"'var' has shape \(8, 4, 4\)"):
        build_autoencoder(config, required_files(config), with_encoder=False)


def test_missing_published_files_are_each_named(load_config, tmp_path):
    config = load_config("rae_dinov2b_256", "autoguidance")
    config.checkpoints.directory = str(tmp_path / "models")
    with pytest.raises(MissingCheckpointError) as error:
        run(config, tmp_path / "run")
    roles = [file.role for file in error.value.files]
    assert roles == ["decoder", "latent_stats", "stage2", "guide", "inception", "reference_batch"]
    message = str(error.value)
    assert (
        "hf download nyu-visionx/RAE-collections "
        "DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt "
        f"--local-dir {tmp_path / 'models'}"
    ) in message
    assert "VIRTUAL_imagenet256_labeled.npz" in message
    # Reconstruction needs the encoder instead of the stage-2 networks.
    config = load_config("rae_dinov2b_256", "reconstruct")
    config.checkpoints.directory = str(tmp_path / "models")
    with pytest.raises(MissingCheckpointError) as error:
        required_files(config)
    assert [f.role for f in error.value.files] == [
        "encoder",
        "decoder",
        "latent_stats",
        "inception",
    ]
    assert "hf download facebook/dinov2-with-registers-base model.safetensors" in str(error.value)
    # The CFG variant at the published scale 1.0 runs no guide, so it does not ask for one.
    config = load_config("rae_dinov2b_256", "cfg")
    config.checkpoints.directory = str(tmp_path / "models")
    with pytest.raises(MissingCheckpointError) as error:
        required_files(config)
    assert "guide" not in [f.role for f in error.value.files]


@pytest.fixture(scope="module")
def reconstruction(load_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    for index, (height, width) in enumerate([(24, 20), (16, 16), (40, 33), (20, 50), (17, 19)]):
        coarse = rng.integers(0, 256, size=(3, 3, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        image.save(folder / f"{index:02d}.{'png' if index % 2 else 'jpg'}")
    config = load_config("tiny", "reconstruct")
    config.progress = False
    config.reconstruction.image_folder = str(folder)
    workdir = tmp_path_factory.mktemp("recon")
    return config, workdir, run(config, workdir)


def test_reconstruction_end_to_end(reconstruction):
    config, workdir, results = reconstruction
    store = ShardStore(workdir / "reconstructions", num_samples=5, shard_size=4)
    reconstructions, _ = store.read_all()
    assert reconstructions.shape == (5, 16, 16, 3) and reconstructions.dtype == np.uint8
    metrics = json.loads((workdir / "results_reconstruct.json").read_text())["metrics"]
    assert metrics == results["metrics"]
    # Random weights reconstruct badly but finitely: PSNR in (0, 100) dB, SSIM below 1.
    assert 0.0 < metrics["psnr"] < 100.0 and -1.0 <= metrics["ssim"] < 1.0
    assert np.isfinite(metrics["rfid"]) and metrics["rfid"] > 0
    grid = np.asarray(Image.open(workdir / "reconstructions_grid.png"))
    assert grid.shape == (4 * 18 + 2, 2 * 18 + 2, 3)  # 4 (original, reconstruction) rows


def test_encode_normalise_sample_decode_chain(reconstruction):
    # The pieces both tasks use, chained by hand: RAE latents of images go through the stage-2
    # sampler (from t = 0.5 on the shifted grid) and back through the decoder. Traced with
    # eval_shape (shapes and dtypes, no compile); the two tasks above run the same pieces.
    config, _, _ = reconstruction
    autoencoder = build_autoencoder(config, {}, with_encoder=True)
    model = build_stage2(config, {}, "stage2")
    images = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)

    def chain(autoencoder, model, images):
        tokens = autoencoder.encode_tokens(images)
        latents = autoencoder.encode(images)
        noise = jax.random.normal(jax.random.key(0), latents.shape)
        start = 0.5 * latents + 0.5 * noise  # x_t at t = 0.5 (linear path)
        grid = ShiftedGrid(UniformGrid(2, t_start=0.5), config.time_shift)
        field = ConditionalField(model, jnp.array([1, 2]))
        sampled = sample(field, start, Euler(), grid).sample
        return tokens, latents, sampled, to_uint8(autoencoder.decode(sampled))

    tokens, latents, sampled, decoded = nnx.eval_shape(chain, autoencoder, model, images)
    assert tokens.shape == latents.shape == sampled.shape == (2, 4, 4, 32)
    assert tokens.dtype == latents.dtype == sampled.dtype == jnp.float32
    assert decoded.shape == (2, 16, 16, 3) and decoded.dtype == jnp.uint8


def test_a_broken_inception_file_stops_the_run_before_any_sample(generation, tmp_path):
    # The Inception and the reference batch are read before sampling starts: a bad file must
    # not surface after every sample has been generated.
    config = generation["config"].copy_and_resolve_references()
    broken = tmp_path / "fid_inception.safetensors"
    broken.write_bytes(b"not a safetensors file")
    config.checkpoints.inception = {"path": str(broken), "url": "hf://o/r/fid_inception"}
    workdir = tmp_path / "run"
    with pytest.raises(Exception) as error:  # noqa: PT011 - the reader's own error type
        run(config, workdir)
    assert not isinstance(error.value, AssertionError)
    assert not list((workdir / "samples").glob("shard_*")), "sampled before reading Inception"
