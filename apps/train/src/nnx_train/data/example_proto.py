"""``tf.train.Example`` protos read and written without TensorFlow.

TFDS prepares ``imagenet2012`` as ArrayRecord shards whose records are serialized
``tf.train.Example`` messages (features ``image``: the encoded JPEG, ``label``: int64,
``file_name``: bytes). The schema (tensorflow/core/example/example.proto, feature.proto) is
small enough to parse from the protobuf wire format directly::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }    // entries: key = 1, value = 2
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

Wire format (protobuf.dev/programming-guides/encoding): each field is a varint tag
``field_number << 3 | wire_type`` followed by a varint (type 0), 8 bytes (1), a varint length
and that many bytes (2) or 4 bytes (5). Parsers must accept packed and unpacked repeated
scalars, so both are read here. The encoder writes what TensorFlow writes (packed lists).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

__all__ = ["ExampleError", "encode_example", "parse_example"]

FeatureValues = list[bytes] | list[int] | list[float]

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class ExampleError(ValueError):
    """The bytes are not a serialized ``tf.train.Example``."""


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ExampleError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes | memoryview):
    """Yields ``(field_number, wire_type, value)``; ``value`` is an int or a memoryview."""
    data = memoryview(data)
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire in (_FIXED64, _FIXED32, _LENGTH):
            if wire == _LENGTH:
                size, pos = _varint(data, pos)
            else:
                size = 8 if wire == _FIXED64 else 4
            if pos + size > len(data):
                raise ExampleError(f"field {number} runs past the end of the message")
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ExampleError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _int64_list(data: memoryview) -> list[int]:
    values: list[int] = []
    for number, wire, value in _fields(data):
        if number != 1:
            continue
        if wire == _VARINT:
            values.append(_signed64(value))
        elif wire == _LENGTH:  # packed
            pos = 0
            while pos < len(value):
                item, pos = _varint(value, pos)
                values.append(_signed64(item))
    return values


def _float_list(data: memoryview) -> list[float]:
    values: list[float] = []
    for number, wire, value in _fields(data):
        if number == 1 and wire == _FIXED32:
            values.append(struct.unpack("<f", value)[0])
        elif number == 1 and wire == _LENGTH:  # packed
            values.extend(struct.unpack(f"<{len(value) // 4}f", value))
    return values


def _feature(data: memoryview) -> FeatureValues:
    values: FeatureValues = []
    for number, wire, value in _fields(data):
        if wire != _LENGTH:
            continue
        if number == 1:
            values = [bytes(v) for n, w, v in _fields(value) if n == 1 and w == _LENGTH]
        elif number == 2:
            values = _float_list(value)
        elif number == 3:
            values = _int64_list(value)
    return values


def parse_example(data: bytes) -> dict[str, FeatureValues]:
    """Decodes a serialized ``tf.train.Example``.

    Args:
      data: the serialized message (one ArrayRecord / TFRecord record).

    Returns:
      ``{feature name: list of values}``: ``bytes`` for a BytesList, ``int`` for an
      Int64List, ``float`` for a FloatList.

    Raises:
      ExampleError: the bytes are not a valid message of this schema.
    """
    features: dict[str, FeatureValues] = {}
    for number, wire, value in _fields(data):
        if number != 1 or wire != _LENGTH:
            continue
        for entry_number, entry_wire, entry in _fields(value):
            if entry_number != 1 or entry_wire != _LENGTH:
                continue
            name, feature = "", memoryview(b"")
            for field, field_wire, item in _fields(entry):
                if field == 1 and field_wire == _LENGTH:
                    name = bytes(item).decode("utf-8")
                elif field == 2 and field_wire == _LENGTH:
                    feature = item
            features[name] = _feature(feature)
    return features


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: ten-byte two's complement
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LENGTH) + _encode_varint(len(payload)) + payload


def encode_example(features: Mapping[str, bytes | int | float | Sequence]) -> bytes:
    """Serializes ``{name: value}`` as a ``tf.train.Example`` (inverse of `parse_example`).

    Args:
      features: each value is ``bytes`` / ``int`` / ``float`` or a list of one of them
        (``str`` is stored as UTF-8 bytes).

    Returns:
      The serialized message, byte-identical to TensorFlow's ``SerializeToString()`` for
      single-valued features in the same order.
    """
    entries = b""
    for name, value in features.items():
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        items = [v.encode("utf-8") if isinstance(v, str) else v for v in items]
        if all(isinstance(v, bytes) for v in items):
            body, kind = b"".join(_length_field(1, v) for v in items), 1
        elif all(isinstance(v, int) for v in items):
            body = _length_field(1, b"".join(_encode_varint(v) for v in items)) if items else b""
            kind = 3
        else:
            body = _length_field(1, struct.pack(f"<{len(items)}f", *items))
            kind = 2
        feature = _length_field(kind, body)
        entry = _length_field(1, name.encode("utf-8")) + _length_field(2, feature)
        entries += _length_field(1, entry)
    return _length_field(1, entries)
