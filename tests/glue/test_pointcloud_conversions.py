"""PointCloud2 <-> numpy: decoding checked against bytes written with struct.pack (independent of the
decoder's dtype), generated layouts (datatypes, counts, padding, row_step, endianness, organized, NaN),
round trips through the encoder, and the error cases."""
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from fovea_ros.conversions import (
    ImplausibleXyzError,
    MessageLayoutError,
    MissingXyzError,
    XyzFieldError,
    array_to_pointcloud2,
    drop_non_finite_xyz,
    ensure_native_byte_order,
    pointcloud2_to_array,
    xyz_array,
)

SETTINGS = settings(max_examples=60, deadline=None)

# PointField datatype -> (struct format character, size)
STRUCT_FORMATS = {
    PointField.INT8: ("b", 1), PointField.UINT8: ("B", 1), PointField.INT16: ("h", 2),
    PointField.UINT16: ("H", 2), PointField.INT32: ("i", 4), PointField.UINT32: ("I", 4),
    PointField.FLOAT32: ("f", 4), PointField.FLOAT64: ("d", 8),
}
NUMPY_TYPES = {PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
               PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}


def field(name, offset, datatype, count=1):
    return PointField(name=name, offset=offset, datatype=datatype, count=count)


def cloud(fields, data, *, height, width, point_step, row_step, big_endian=False):
    return PointCloud2(header=Header(frame_id="lidar"), height=height, width=width, fields=fields,
                       is_bigendian=big_endian, point_step=point_step, row_step=row_step, data=data, is_dense=False)


# ------------------------------------------------------------------------------------- hand-built messages

def test_two_point_big_endian_cloud_with_padding_decodes_field_by_field():
    # x, y, z float32 at 0/4/8, 4 bytes of padding, intensity float64 at 16, ring uint16 at 24, 6 bytes
    # padding up to point_step 32. The padding bytes are 0xEE so reading them would show.
    layout = ">fff4sdH6s"
    pad4, pad6 = b"\xee" * 4, b"\xee" * 6
    data = struct.pack(layout, 1.5, -2.0, 3.25, pad4, 0.125, 7, pad6)
    data += struct.pack(layout, math.nan, 0.0, -1.0, pad4, 1e300, 65535, pad6)
    assert len(data) == 64
    fields = [field("x", 0, PointField.FLOAT32), field("y", 4, PointField.FLOAT32), field("z", 8, PointField.FLOAT32),
              field("intensity", 16, PointField.FLOAT64), field("ring", 24, PointField.UINT16)]
    points = pointcloud2_to_array(cloud(fields, data, height=1, width=2, point_step=32, row_step=64, big_endian=True))

    assert points.shape == (2,)
    assert points.dtype.names == ("x", "y", "z", "intensity", "ring")
    assert points["x"][0] == 1.5 and points["y"][0] == -2.0 and points["z"][0] == 3.25
    assert points["intensity"][0] == 0.125 and points["ring"][0] == 7
    assert math.isnan(points["x"][1])  # NaN points are kept
    assert points["intensity"][1] == 1e300 and points["ring"][1] == 65535


def test_organized_cloud_with_row_padding_and_count_field():
    # 2 rows x 2 columns; each point: uint8 label, 1 byte pad, int16[3] normal at offset 2, so
    # point_step 8; each row padded with 5 bytes, so row_step = 2 * 8 + 5 = 21 (odd: rows misaligned).
    def point(label, normal):
        return struct.pack("<Bx3h", label, *normal)

    rows = [point(1, (1, -2, 3)) + point(2, (4, 5, -6)), point(3, (-7, 8, 9)) + point(4, (0, 0, -32768))]
    data = b"".join(row + b"\x55" * 5 for row in rows)
    fields = [field("label", 0, PointField.UINT8), field("normal", 2, PointField.INT16, count=3)]
    points = pointcloud2_to_array(cloud(fields, data, height=2, width=2, point_step=8, row_step=21))

    assert points.shape == (2, 2)
    np.testing.assert_array_equal(points["label"], [[1, 2], [3, 4]])
    assert points["normal"].shape == (2, 2, 3)
    np.testing.assert_array_equal(points["normal"][1, 0], [-7, 8, 9])
    np.testing.assert_array_equal(points["normal"][1, 1], [0, 0, -32768])


def test_encoder_writes_packed_little_endian_bytes():
    points = np.array([(1.0, 2.0, 3.0, 200), (-1.0, 0.5, 0.0, 9)],
                      dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("label", "u1")])
    header = Header(frame_id="base_link")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = array_to_pointcloud2(points, header)

    assert bytes(msg.data) == struct.pack("<fffB", 1.0, 2.0, 3.0, 200) + struct.pack("<fffB", -1.0, 0.5, 0.0, 9)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 2, 13, 26)
    assert not msg.is_bigendian and msg.is_dense
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("label", 12, PointField.UINT8, 1)]
    assert msg.header.frame_id == "base_link" and msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 345


def test_encoder_big_endian_and_sub_array_field():
    points = np.array([((1, 2), 0.5)], dtype=[("pair", "i2", (2,)), ("t", "f8")])
    msg = array_to_pointcloud2(points, is_bigendian=True)
    assert bytes(msg.data) == struct.pack(">2hd", 1, 2, 0.5)
    assert [(f.name, f.offset, f.count) for f in msg.fields] == [("pair", 0, 2), ("t", 4, 1)]
    assert msg.is_dense  # no xyz fields: nothing to be invalid


def test_decoded_array_is_a_view_unless_copied():
    msg = array_to_pointcloud2(np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]))
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    assert np.shares_memory(pointcloud2_to_array(msg), raw)
    assert not np.shares_memory(pointcloud2_to_array(msg, copy=True), raw)


def test_empty_cloud():
    empty = array_to_pointcloud2(np.zeros(0, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]))
    assert (empty.height, empty.width, len(empty.data)) == (1, 0, 0)
    assert pointcloud2_to_array(empty).shape == (0,)
    no_rows = cloud([field("x", 0, PointField.FLOAT32)], b"", height=0, width=0, point_step=4, row_step=0)
    assert pointcloud2_to_array(no_rows).shape == (0,)
    no_columns = cloud([field("x", 0, PointField.FLOAT32)], b"", height=3, width=0, point_step=4, row_step=0)
    assert pointcloud2_to_array(no_columns).shape == (3, 0)
    with pytest.raises(MessageLayoutError, match="7 bytes"):
        pointcloud2_to_array(cloud([field("x", 0, PointField.FLOAT32)], bytes(7), height=1, width=0,
                                   point_step=4, row_step=0))


def test_count_zero_is_read_as_one():
    msg = cloud([field("x", 0, PointField.FLOAT32, count=0)], struct.pack("<2f", 1.0, 2.0), height=1, width=2,
                point_step=4, row_step=8)
    points = pointcloud2_to_array(msg)
    assert points["x"].shape == (2,) and points["x"].tolist() == [1.0, 2.0]


# ----------------------------------------------------------------------------------------------- errors

XYZ = [field("x", 0, PointField.FLOAT32), field("y", 4, PointField.FLOAT32), field("z", 8, PointField.FLOAT32)]


@pytest.mark.parametrize(
    "fields, data_len, point_step, row_step, message",
    [
        (XYZ, 23, 12, 24, "expected height \\* row_step"),
        (XYZ, 24, 12, 20, "row_step 20 is smaller"),
        (XYZ, 24, 8, 16, "point_step is 8"),
        ([field("x", 0, 9)], 8, 4, 8, "datatype 9"),
        ([field("x", 0, PointField.FLOAT64), field("y", 4, PointField.FLOAT32)], 24, 12, 24, "overlap"),
        ([field("x", 0, PointField.FLOAT32), field("x", 4, PointField.FLOAT32)], 16, 8, 16, "appears twice"),
        ([], 16, 8, 16, "no fields"),
    ],
)
def test_inconsistent_layouts_raise(fields, data_len, point_step, row_step, message):
    msg = cloud(fields, bytes(data_len), height=1, width=2, point_step=point_step, row_step=row_step)
    with pytest.raises(MessageLayoutError, match=message):
        pointcloud2_to_array(msg)


@pytest.mark.parametrize("dtype", ["i8", "u8", "?", "f2", "c8"])
def test_encoder_rejects_types_pointfield_cannot_express(dtype):
    with pytest.raises(ValueError, match="field 'v'"):
        array_to_pointcloud2(np.zeros(3, dtype=[("x", "f4"), ("v", dtype)]))


def test_encoder_rejects_plain_arrays_and_3d_shapes():
    with pytest.raises(ValueError, match="structured"):
        array_to_pointcloud2(np.zeros((3, 3), dtype="f4"))
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        array_to_pointcloud2(np.zeros((2, 2, 2), dtype=[("x", "f4")]))


# ---------------------------------------------------------------------------------- generated layouts

@st.composite
def cloud_layouts(draw):
    """Fields with random datatypes, counts and gaps; random trailing and row padding; random shape."""
    fields, offset = [], 0
    for i in range(draw(st.integers(1, 5))):
        offset += draw(st.integers(0, 3))  # padding before the field
        datatype = draw(st.sampled_from(sorted(STRUCT_FORMATS)))
        count = draw(st.integers(1, 3))
        fields.append((f"f{i}", offset, datatype, count))
        offset += STRUCT_FORMATS[datatype][1] * count
    point_step = offset + draw(st.integers(0, 5))
    height = draw(st.integers(1, 3))
    width = draw(st.integers(1, 5))
    row_step = width * point_step + draw(st.integers(0, 7))
    return fields, point_step, height, width, row_step, draw(st.booleans()), draw(st.integers(0, 2**32 - 1))


def random_values(rng, datatype, shape):
    kind = NUMPY_TYPES[datatype]
    if kind[0] == "f":
        values = rng.normal(scale=100.0, size=shape).astype(kind)
        special = rng.random(shape) < 0.15  # NaN and inf points must survive untouched
        values[special] = rng.choice([np.nan, np.inf, -np.inf], size=int(special.sum()))
        return values
    info = np.iinfo(kind)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=kind)


def build_message(layout):
    """A PointCloud2 whose bytes are written with struct.pack, plus the values per field, shape (H, W, count)."""
    fields, point_step, height, width, row_step, big_endian, seed = layout
    rng = np.random.default_rng(seed)
    order = ">" if big_endian else "<"
    values = {name: random_values(rng, datatype, (height, width, count)) for name, _, datatype, count in fields}
    buffer = bytearray(rng.integers(0, 256, size=height * row_step, dtype=np.uint8).tobytes())  # garbage padding
    for row in range(height):
        for col in range(width):
            start = row * row_step + col * point_step
            for name, offset, datatype, count in fields:
                fmt = order + STRUCT_FORMATS[datatype][0] * count
                struct.pack_into(fmt, buffer, start + offset, *values[name][row, col].tolist())
    msg = cloud([field(*f) for f in fields], bytes(buffer), height=height, width=width, point_step=point_step,
                row_step=row_step, big_endian=big_endian)
    return msg, values


def assert_field_equal(decoded, expected):
    np.testing.assert_array_equal(np.asarray(decoded, dtype=expected.dtype), expected)  # NaN == NaN here


@SETTINGS
@given(cloud_layouts())
def test_decoder_reads_struct_packed_clouds(layout):
    msg, values = build_message(layout)
    fields, point_step, height, width, *_ = layout
    points = pointcloud2_to_array(msg)
    assert points.shape == ((width,) if height == 1 else (height, width))
    assert points.dtype.itemsize == point_step
    for name, _, _, count in fields:
        expected = values[name] if count > 1 else values[name][..., 0]
        assert_field_equal(points[name], expected.reshape(points.shape + ((count,) if count > 1 else ())))


@SETTINGS
@given(cloud_layouts(), st.booleans())
def test_decode_encode_decode_round_trip(layout, encode_big_endian):
    msg, _ = build_message(layout)
    points = pointcloud2_to_array(msg)
    encoded = array_to_pointcloud2(points, msg.header, is_bigendian=encode_big_endian)
    packed_step = sum(np.dtype(NUMPY_TYPES[d]).itemsize * c for _, _, d, c in layout[0])
    assert (encoded.height, encoded.width) == (msg.height, msg.width)
    assert encoded.point_step == packed_step and encoded.row_step == packed_step * msg.width
    assert len(encoded.data) == encoded.row_step * encoded.height
    assert encoded.is_bigendian == encode_big_endian
    again = pointcloud2_to_array(encoded)
    assert again.shape == points.shape and again.dtype.names == points.dtype.names
    for name in points.dtype.names:
        assert_field_equal(again[name], np.asarray(points[name]))
    native = ensure_native_byte_order(again)
    assert all(native.dtype.fields[n][0].base.isnative for n in native.dtype.names)
    for name in points.dtype.names:
        assert_field_equal(native[name], np.asarray(points[name]))


@SETTINGS
@given(st.integers(0, 40), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_drop_non_finite_xyz_counts_exactly_the_invalid_points(n, rows, seed):
    rng = np.random.default_rng(seed)
    points = np.zeros((rows, n), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("i", "u1")])
    for axis in "xyz":
        points[axis] = rng.normal(size=(rows, n))
        bad = rng.random((rows, n)) < 0.2
        points[axis][bad] = rng.choice([np.nan, np.inf, -np.inf], size=int(bad.sum()))
    points["i"] = np.arange(rows * n).reshape(rows, n) % 251
    kept, dropped = drop_non_finite_xyz(points)
    flat = points.reshape(-1)
    valid = np.isfinite(flat["x"]) & np.isfinite(flat["y"]) & np.isfinite(flat["z"])
    assert dropped == int((~valid).sum())
    assert kept.shape == (int(valid.sum()),)
    np.testing.assert_array_equal(kept["i"], flat["i"][valid])  # order kept
    msg = array_to_pointcloud2(points)
    assert msg.is_dense == (dropped == 0)


def test_drop_non_finite_xyz_needs_xyz():
    with pytest.raises(ValueError, match="no field"):
        drop_non_finite_xyz(np.zeros(3, dtype=[("x", "f4"), ("y", "f4")]))


# ------------------------------------------------------------------------ coordinates: types, byte order

def xyz_cloud(n=500, dtype="<f4", seed=0, scale=40.0):
    rng = np.random.default_rng(seed)
    points = np.zeros(n, [("x", dtype), ("y", dtype), ("z", dtype), ("intensity", "<f4")])
    for name in ("x", "y", "z"):
        points[name] = rng.uniform(-scale, scale, n)
    return points, array_to_pointcloud2(points, Header(frame_id="lidar"), is_bigendian=dtype.startswith(">"))


@pytest.mark.parametrize("datatype, count", [(PointField.UINT8, 1), (PointField.INT16, 1), (PointField.INT32, 1),
                                             (PointField.UINT32, 1), (PointField.FLOAT32, 2),
                                             (PointField.FLOAT64, 2)])
@pytest.mark.parametrize("name", ["x", "y", "z"])
def test_a_coordinate_that_is_not_one_float_is_refused_with_its_own_reason(name, datatype, count):
    size = STRUCT_FORMATS[datatype][1] * count
    fields = [field(n, 16 * i, datatype if n == name else PointField.FLOAT32, count if n == name else 1)
              for i, n in enumerate("xyz")]
    msg = cloud(fields, bytes(48 * 3), height=1, width=3, point_step=48, row_step=144)
    assert size <= 16
    with pytest.raises(XyzFieldError, match=f"PointField '{name}' is .* with count {count}; x, y and z must be") as err:
        pointcloud2_to_array(msg)
    assert err.value.reason == "bad xyz field type" and isinstance(err.value, ValueError)


def test_other_fields_may_have_any_count_and_type():
    fields = [field("x", 0, PointField.FLOAT64), field("y", 8, PointField.FLOAT64), field("z", 16, PointField.FLOAT64),
              field("rgb", 24, PointField.UINT8, count=3), field("label", 27, PointField.UINT8)]
    points = pointcloud2_to_array(cloud(fields, bytes(28 * 2), height=1, width=2, point_step=28, row_step=56),
                                  require_xyz=True)
    assert points["rgb"].shape == (2, 3) and xyz_array(points).shape == (2, 3)


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", ">f8"])
def test_byte_order_is_honoured(dtype):
    points, msg = xyz_cloud(dtype=dtype)
    decoded = pointcloud2_to_array(msg, require_xyz=True)
    np.testing.assert_array_equal(xyz_array(decoded), xyz_array(points))


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", ">f8"])
@pytest.mark.parametrize("scale", [0.5, 40.0, 300.0])
def test_data_in_the_other_byte_order_than_flagged_is_refused(dtype, scale):
    _, msg = xyz_cloud(dtype=dtype, scale=scale)
    msg.is_bigendian = not msg.is_bigendian  # the same bytes, the flag lies
    pointcloud2_to_array(msg)  # the layout itself is consistent ...
    with pytest.raises(ImplausibleXyzError, match="does not match the data's byte order") as err:
        pointcloud2_to_array(msg, require_xyz=True)  # ... the numbers are not
    assert err.value.reason == "implausible coordinates"


def test_plausibility_ignores_nan_rows_zero_returns_and_a_few_outliers():
    points, _ = xyz_cloud(n=100)
    points["x"][:30] = np.nan          # organised clouds: no return
    points["y"][30:40] = 0.0           # exact zeros are fine
    points["z"][40:45] = 1e9           # a few wild points are left to the method's range filter
    xyz_array(points)


def test_a_cloud_used_as_points_needs_xyz():
    fields = [field("a", 0, PointField.FLOAT32)]
    msg = cloud(fields, bytes(8), height=1, width=2, point_step=4, row_step=8)
    assert pointcloud2_to_array(msg).shape == (2,)
    with pytest.raises(MissingXyzError, match=r"no x, y, z field\(s\)") as err:
        pointcloud2_to_array(msg, require_xyz=True)
    assert err.value.reason == "wrong fields"
