"""ArrayRecord / TFDS ``tf.train.Example`` reading without TensorFlow.

The Example parser is checked against the protobuf library itself (the schema of
tensorflow/core/example/{example,feature}.proto built at run time, packed and unpacked
lists); the source against TFDS-named files written with array_record's writer; the
per-host split against simulated process indices.
"""

import numpy as np
import pytest
from PIL import Image
from readers_testlib import id_latent, npy_bytes, png_bytes, write_arrayrecord

from nnx_train import build, defaults
from nnx_train.data import (
    ArrayRecordSource,
    LatentCodec,
    PixelCodec,
    adm_center_crop,
    encode_example,
    make_iterator,
    parse_example,
)
from nnx_train.errors import ConfigError, DataError

TFDS_NAME = "imagenet2012-{split}.array_record-{index:05d}-of-00002"


def _example_class(syntax: str):
    """``tf.train.Example`` as a protobuf class, from a descriptor built here (no TF).

    proto3 packs repeated scalars (what TensorFlow writes); proto2 writes them unpacked.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name=f"example_{syntax}.proto", package=f"t{syntax}", syntax=syntax
    )

    def message(name, *fields, oneof=None):
        proto = file.message_type.add(name=name)
        if oneof:
            proto.oneof_decl.add(name=oneof)
        for number, (field_name, kind, label, type_name) in enumerate(fields, start=1):
            entry = proto.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                entry.type_name = f".t{syntax}.{type_name}"
            if oneof:
                entry.oneof_index = 0
        return proto

    repeated, optional = field.LABEL_REPEATED, field.LABEL_OPTIONAL
    message("BytesList", ("value", field.TYPE_BYTES, repeated, None))
    message("FloatList", ("value", field.TYPE_FLOAT, repeated, None))
    message("Int64List", ("value", field.TYPE_INT64, repeated, None))
    message(
        "Feature",
        ("bytes_list", field.TYPE_MESSAGE, optional, "BytesList"),
        ("float_list", field.TYPE_MESSAGE, optional, "FloatList"),
        ("int64_list", field.TYPE_MESSAGE, optional, "Int64List"),
        oneof="kind",
    )
    features = message(
        "Features", ("feature", field.TYPE_MESSAGE, repeated, "Features.FeatureEntry")
    )
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=optional)
    entry.field.add(
        name="value",
        number=2,
        type=field.TYPE_MESSAGE,
        label=optional,
        type_name=f".t{syntax}.Feature",
    )
    message("Example", ("features", field.TYPE_MESSAGE, optional, "Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"t{syntax}.Example"))


@pytest.mark.parametrize("syntax", ["proto3", "proto2"])
def test_parse_example_matches_protobuf(syntax):
    example = _example_class(syntax)()
    feature = example.features.feature
    feature["image"].bytes_list.value.extend([b"\xff\xd8jpeg", b""])
    feature["label"].int64_list.value.extend([-3, 0, 5, 2**40, -(2**63)])
    feature["scale"].float_list.value.extend([0.5, -2.25])
    feature["empty"].int64_list.SetInParent()
    parsed = parse_example(example.SerializeToString())
    assert parsed == {
        "image": [b"\xff\xd8jpeg", b""],
        "label": [-3, 0, 5, 2**40, -(2**63)],
        "scale": [0.5, -2.25],
        "empty": [],
    }


def test_encode_example_is_protobufs_deterministic_serialization():
    values = {"image": b"\x89PNG", "label": 7, "name": "n01440764_10026.JPEG", "w": [1.5, 2.0]}
    ours = encode_example(dict(sorted(values.items())))
    reference = _example_class("proto3")()
    reference.ParseFromString(ours)
    assert reference.features.feature["label"].int64_list.value == [7]
    assert reference.features.feature["w"].float_list.value == [1.5, 2.0]
    # Deterministic serialization writes map entries sorted by key, as we did above.
    assert reference.SerializeToString(deterministic=True) == ours


@pytest.fixture(scope="module")
def tfds_folder(tmp_path_factory):
    """Two TFDS-named train files (5 + 4 records) and a validation file that must be skipped."""
    root = tmp_path_factory.mktemp("imagenet2012")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (12 + i, 20 - i, 3), dtype=np.uint8) for i in range(9)]
    labels = [int(v) for v in rng.integers(0, 10, 9)]
    for index, chunk in enumerate([range(0, 5), range(5, 9)]):
        write_arrayrecord(
            root / TFDS_NAME.format(split="train", index=index),
            [{"image": png_bytes(images[i]), "label": labels[i], "file_name": b"x"} for i in chunk],
        )
    write_arrayrecord(
        root / TFDS_NAME.format(split="validation", index=0),
        [{"image": png_bytes(images[0]), "label": 0}],
    )
    return root, images, labels


def test_tfds_layout_decodes_to_adm_crops(tfds_folder):
    root, images, labels = tfds_folder
    source = ArrayRecordSource(
        path=str(root), split="train", codec=PixelCodec(resolution=8), num_classes=10
    )
    assert len(source) == 9 and source.shape == (8, 8, 3)
    for index, (pixels, label) in enumerate(zip(images, labels)):
        record = source[index]
        expected = adm_center_crop(Image.fromarray(pixels), 8)  # PNG is lossless
        assert record["x"].dtype == np.uint8
        np.testing.assert_array_equal(record["x"], expected)
        assert int(record["y"]) == label


def test_flips_are_mirror_images_seeded_by_the_generator(tfds_folder):
    root, _, _ = tfds_folder
    source = ArrayRecordSource(
        path=str(root),
        split="train",
        codec=PixelCodec(resolution=8, horizontal_flip=True),
        num_classes=10,
    )
    record = source[3]
    outputs = [source.augment(record, np.random.default_rng(s))["x"] for s in range(16)]
    flipped = [not np.array_equal(x, record["x"]) for x in outputs]
    for x, was_flipped in zip(outputs, flipped):
        np.testing.assert_array_equal(x, record["x"][:, ::-1] if was_flipped else record["x"])
    assert 0 < sum(flipped) < 16  # probability 1/2: all-or-none has odds 2**-15


def test_latent_records_are_sampled_and_normalised(tmp_path):
    mean = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    stacked = np.concatenate([mean, np.zeros_like(mean)])  # mean || std = 0: sample == mean
    write_arrayrecord(
        tmp_path / "latents.array_record", [{"latent": npy_bytes(stacked), "label": 3}]
    )
    codec = LatentCodec(posterior="mean_std", shift=(1.0, 2.0), scale=2.0)
    source = ArrayRecordSource(
        path=str(tmp_path), split="", codec=codec, num_classes=4, image_key="latent"
    )
    assert source.shape == (2, 2, 2)
    record = source.augment(source[0], np.random.default_rng(0))
    expected = (np.transpose(mean, (1, 2, 0)) - np.array([1.0, 2.0])) * 2.0
    np.testing.assert_allclose(record["x"], expected, rtol=0, atol=0)  # exact arithmetic
    assert int(record["y"]) == 3


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_hosts_read_disjoint_records_covering_the_epoch(tmp_path, process_count):
    num_records = 12
    write_arrayrecord(
        tmp_path / "ids.array_record",
        [{"image": npy_bytes(id_latent(i)), "label": i} for i in range(num_records)],
    )
    codec = LatentCodec(posterior="sample")
    source = ArrayRecordSource(path=str(tmp_path), codec=codec, num_classes=num_records)
    global_batch = 6 if process_count < 3 else 3
    seen = []
    for process_index in range(process_count):
        iterator = make_iterator(
            source,
            global_batch_size=global_batch,
            seed=4,
            process_index=process_index,
            process_count=process_count,
            read_threads=0,
        )
        for _ in range(num_records // global_batch):  # one epoch of global batches
            batch = next(iterator)
            np.testing.assert_array_equal(batch["x"][:, 0, 0, 0], batch["y"])  # x holds the id
            seen.extend(int(y) for y in batch["y"])
    assert sorted(seen) == list(range(num_records))


def _one_line(error, match, build_source):
    with pytest.raises(error, match=match) as info:
        build_source()
    assert "\n" not in str(info.value)


def test_errors_name_the_problem(tmp_path, tfds_folder):
    root, _, _ = tfds_folder

    def source(path=str(root), split="train", num_classes=10, image_key="image"):
        codec = PixelCodec(resolution=8)
        return lambda: ArrayRecordSource(
            path=path, split=split, codec=codec, num_classes=num_classes, image_key=image_key
        )

    _one_line(DataError, "does not exist", source(path=str(tmp_path / "nowhere")))
    _one_line(DataError, r"No \*-test.array_record\* files.*data.split", source(split="test"))
    _one_line(
        DataError,
        r"features \['file_name', 'image', 'label'\].*'jpeg'.*data.image_key",
        source(image_key="jpeg"),
    )
    _one_line(DataError, "Label out of range: record 0 of .*-00000-of-00002", source(num_classes=1))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x-train.array_record-00000").write_bytes(b"not an array record" * 10)
    _one_line(
        DataError, "Cannot read ArrayRecord file .*x-train.array_record-00000", source(str(broken))
    )


def test_build_reads_arrayrecord_config(tfds_folder):
    root, _, _ = tfds_folder
    config = defaults.base_config()
    config.data = defaults.arrayrecord_data(path=str(root), resolution=8, num_classes=10)
    source = build.build_data_source(config)
    assert isinstance(source, ArrayRecordSource) and len(source) == 9
    config.data.content = "jpeg"
    with pytest.raises(ConfigError, match="data.content='jpeg'; valid names: pixels, latents"):
        build.build_data_source(config)
    config.data.path = ""
    with pytest.raises(ConfigError, match="data.path is empty"):
        build.build_data_source(config)
