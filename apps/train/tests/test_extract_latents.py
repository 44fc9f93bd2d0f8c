"""tools/extract_latents.py on tiny random images with a tiny random SD-VAE.

Checks the EDM2 layout (CHW float32 mean||std files, dataset.json labels), that the stored
posterior equals the VAE applied to the ADM-cropped pixels, that flips double the entries with
mirrored latents, that the trainer reads the result, and that an interrupted run resumes by
writing only the missing files.
"""

import importlib.util
import json
import os

import numpy as np
import pytest
from flax import nnx

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tools", "extract_latents.py")


def _tool():
    spec = importlib.util.spec_from_file_location("extract_latents_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        os.makedirs(root / label)
        for i in range(3):
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def tiny_vae():
    import nnx_nets

    return nnx_nets.SDVAE(
        block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4, rngs=nnx.Rngs(0)
    )


def test_extract_writes_edm2_latents(images, tiny_vae, tmp_path):
    tool = _tool()
    encode = tool.sdvae_encoder(tiny_vae)
    result = tool.extract(
        str(images),
        str(tmp_path),
        encode=encode,
        resolution=16,
        flip=True,
        batch_size=4,
        progress=False,
    )
    assert result == {"written": 12, "skipped": 0, "total": 12, "index": True}
    index = json.loads((tmp_path / "dataset.json").read_text())["labels"]
    assert [label for _, label in index] == [0, 0, 0, 1, 1, 1] * 2
    first = np.load(tmp_path / index[0][0])
    assert first.dtype == np.float32 and first.shape == (8, 8, 8)  # 2C x 16/2 x 16/2, CHW

    # Stored moments equal the VAE on the ADM crop of the same image (float32 tolerance:
    # the same jitted computation on a batch of 4 vs 1).
    from PIL import Image

    from nnx_train import adm_center_crop

    crop = adm_center_crop(Image.open(images / "a" / "0.png"), 16).astype(np.float32) / 127.5 - 1
    posterior = tiny_vae.encode(crop[None])
    expected = np.concatenate([posterior.mean, np.exp(0.5 * posterior.logvar)], axis=-1)[0]
    np.testing.assert_allclose(first, np.transpose(expected, (2, 0, 1)), rtol=1e-4, atol=1e-5)

    flipped = np.load(tmp_path / index[6][0])
    posterior = tiny_vae.encode(crop[None, :, ::-1])
    expected = np.concatenate([posterior.mean, np.exp(0.5 * posterior.logvar)], axis=-1)[0]
    np.testing.assert_allclose(flipped, np.transpose(expected, (2, 0, 1)), rtol=1e-4, atol=1e-5)

    from nnx_train import LatentSource

    source = LatentSource(path=str(tmp_path), num_classes=2, posterior="mean_std")
    assert len(source) == 12 and source.shape == (8, 8, 4)


def test_extract_resumes(images, tiny_vae, tmp_path):
    tool = _tool()
    calls = []
    encode = tool.sdvae_encoder(tiny_vae)

    def counting(pixels):
        calls.append(len(pixels))
        return encode(pixels)

    tool.extract(
        str(images), str(tmp_path), encode=counting, resolution=16, batch_size=2, progress=False
    )
    target = tmp_path / tool.output_name(4)
    before = np.load(target)
    target.unlink()
    (tmp_path / "dataset.json").unlink()
    calls.clear()
    result = tool.extract(
        str(images), str(tmp_path), encode=counting, resolution=16, batch_size=2, progress=False
    )
    assert result == {"written": 1, "skipped": 5, "total": 6, "index": True} and calls == [2]
    np.testing.assert_array_equal(np.load(target), before)
    assert (tmp_path / "dataset.json").is_file()
    assert not list(tmp_path.rglob("*.tmp"))


def test_cli_reports_missing_weights(images, tmp_path, capsys):
    tool = _tool()
    with pytest.raises(SystemExit, match="--weights"):
        tool.main(
            ["--source", str(images), "--dest", str(tmp_path), "--weights", "/nonexistent.pt"]
        )
