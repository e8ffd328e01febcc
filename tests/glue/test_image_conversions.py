"""Image and CameraInfo <-> numpy: hand-built padded images, generated images for every encoding with
random row padding and byte order (bytes written with struct.pack), round trips, and the errors."""
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from fovea_core.geometry.camera import CameraCalibration
from fovea_ros.conversions import (
    IMAGE_ENCODINGS,
    MessageLayoutError,
    UnsupportedEncodingError,
    array_to_image,
    calibration_to_camera_info,
    camera_info_to_calibration,
    image_to_array,
)

SETTINGS = settings(max_examples=60, deadline=None)

# encoding -> (struct character, channels); written out here, not taken from the module under test.
ENCODINGS = {
    "rgb8": ("B", 3), "bgr8": ("B", 3), "rgba8": ("B", 4), "bgra8": ("B", 4), "mono8": ("B", 1),
    "mono16": ("H", 1), "8UC1": ("B", 1), "8UC3": ("B", 3), "8UC4": ("B", 4), "16UC1": ("H", 1),
    "32FC1": ("f", 1), "32FC3": ("f", 3),
}
NUMPY = {"B": np.uint8, "H": np.uint16, "f": np.float32}


def image(encoding, data, *, height, width, step, big_endian=False):
    return Image(header=Header(frame_id="camera_optical"), height=height, width=width, encoding=encoding,
                 is_bigendian=int(big_endian), step=step, data=data)


def test_every_listed_encoding_is_supported():
    assert set(ENCODINGS) == set(IMAGE_ENCODINGS)


def test_padded_2x3_rgb8_image():
    # step 12 = 3 pixels * 3 bytes + 3 bytes of padding per row.
    row0 = bytes([1, 2, 3, 4, 5, 6, 7, 8, 9]) + b"\xff\xff\xff"
    row1 = bytes([10, 11, 12, 13, 14, 15, 16, 17, 18]) + b"\xff\xff\xff"
    pixels = image_to_array(image("rgb8", row0 + row1, height=2, width=3, step=12))
    assert pixels.shape == (2, 3, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[0, 1], [4, 5, 6])  # R, G, B of row 0, column 1
    np.testing.assert_array_equal(pixels[1, 2], [16, 17, 18])


def test_padded_2x3_big_endian_mono16_image():
    # step 8 = 3 * 2 bytes + 2 bytes of padding; big-endian 16-bit values.
    data = struct.pack(">3H2s", 1, 256, 65535, b"\xab\xcd") + struct.pack(">3H2s", 2, 513, 4096, b"\xab\xcd")
    pixels = image_to_array(image("mono16", data, height=2, width=3, step=8, big_endian=True))
    assert pixels.shape == (2, 3)
    np.testing.assert_array_equal(pixels, [[1, 256, 65535], [2, 513, 4096]])


def test_encoder_writes_unpadded_rows():
    pixels = np.array([[0.5, -1.0], [2.0, 3.5]], dtype=np.float32)
    msg = array_to_image(pixels, "32FC1", Header(frame_id="depth_optical"))
    assert (msg.height, msg.width, msg.step, msg.encoding, msg.is_bigendian) == (2, 2, 8, "32FC1", 0)
    assert bytes(msg.data) == struct.pack("<4f", 0.5, -1.0, 2.0, 3.5)
    assert msg.header.frame_id == "depth_optical"
    big = array_to_image(pixels, "32FC1", is_bigendian=True)
    assert bytes(big.data) == struct.pack(">4f", 0.5, -1.0, 2.0, 3.5) and big.is_bigendian


def test_decoded_image_is_a_view_unless_copied():
    msg = array_to_image(np.zeros((4, 5, 3), np.uint8), "bgr8")
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    assert np.shares_memory(image_to_array(msg), raw)
    assert not np.shares_memory(image_to_array(msg, copy=True), raw)


@pytest.mark.parametrize("encoding", ["yuv422", "bayer_rggb8", "64FC1", ""])
def test_unsupported_encodings_raise_a_clear_error(encoding):
    with pytest.raises(UnsupportedEncodingError) as error:
        image_to_array(image(encoding, bytes(4), height=1, width=1, step=4))
    assert isinstance(error.value, ValueError)
    assert repr(encoding) in str(error.value) and "rgb8" in str(error.value) and "32FC1" in str(error.value)
    with pytest.raises(UnsupportedEncodingError):
        array_to_image(np.zeros((1, 1), np.uint8), encoding)


def test_wrong_data_length_and_small_step_raise():
    with pytest.raises(MessageLayoutError, match="expected height \\* step = 2 \\* 6 = 12"):
        image_to_array(image("mono16", bytes(11), height=2, width=3, step=6))
    with pytest.raises(MessageLayoutError, match="step 5 is smaller"):
        image_to_array(image("mono16", bytes(10), height=2, width=3, step=5))


def test_encoder_refuses_mismatched_pixels():
    with pytest.raises(ValueError, match="needs uint16"):
        array_to_image(np.zeros((2, 2), np.float32), "mono16")
    with pytest.raises(ValueError, match="needs shape"):
        array_to_image(np.zeros((2, 2, 3), np.uint8), "rgba8")


@st.composite
def images(draw):
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    return (encoding, draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(0, 7)),
            draw(st.booleans()), draw(st.integers(0, 2**32 - 1)))


def build_image(encoding, height, width, row_padding, big_endian, seed):
    char, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    if char == "f":
        values = rng.normal(scale=10.0, size=(height, width, channels)).astype(np.float32)
        values[rng.random(values.shape) < 0.1] = np.nan  # depth images carry NaN for "no return"
    else:
        values = rng.integers(0, np.iinfo(NUMPY[char]).max, size=(height, width, channels), endpoint=True,
                              dtype=NUMPY[char])
    row_bytes = width * channels * struct.calcsize(char)
    step = row_bytes + row_padding
    order = ">" if big_endian else "<"
    data = b"".join(
        struct.pack(f"{order}{width * channels}{char}", *values[row].reshape(-1).tolist())
        + rng.integers(0, 256, size=row_padding, dtype=np.uint8).tobytes()
        for row in range(height))
    expected = values[..., 0] if channels == 1 else values
    return image(encoding, data, height=height, width=width, step=step, big_endian=big_endian), expected


@SETTINGS
@given(images())
def test_decoder_reads_struct_packed_images(spec):
    msg, expected = build_image(*spec)
    pixels = image_to_array(msg)
    assert pixels.shape == expected.shape
    np.testing.assert_array_equal(pixels, expected)


@SETTINGS
@given(images(), st.booleans())
def test_image_round_trip(spec, encode_big_endian):
    msg, expected = build_image(*spec)
    encoded = array_to_image(image_to_array(msg), msg.encoding, msg.header, is_bigendian=encode_big_endian)
    char, channels = ENCODINGS[msg.encoding]
    assert encoded.step == msg.width * channels * struct.calcsize(char)
    assert len(encoded.data) == encoded.step * encoded.height
    assert (encoded.encoding, encoded.height, encoded.width) == (msg.encoding, msg.height, msg.width)
    np.testing.assert_array_equal(image_to_array(encoded), expected)


# ---------------------------------------------------------------------------------------------- CameraInfo

def test_camera_info_to_calibration_hand_values():
    msg = CameraInfo(header=Header(frame_id="cam_front_optical"), height=900, width=1600,
                     distortion_model="plumb_bob", d=[0.1, -0.2, 0.001, 0.002, 0.0],
                     k=[1266.4, 0.0, 816.3, 0.0, 1266.4, 491.5, 0.0, 0.0, 1.0],
                     p=[1200.0, 0.0, 800.0, 0.0, 0.0, 1200.0, 450.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    calibration = camera_info_to_calibration(msg)
    assert (calibration.width, calibration.height) == (1600, 900)
    assert calibration.K[0, 2] == 816.3 and calibration.K[1, 1] == 1266.4
    np.testing.assert_array_equal(calibration.D, [0.1, -0.2, 0.001, 0.002, 0.0])
    assert calibration.P[0, 0] == 1200.0 and calibration.P[1, 2] == 450.0
    assert calibration.distortion_model == "plumb_bob" and calibration.frame_id == "cam_front_optical"


def test_all_zero_projection_means_not_given():
    msg = CameraInfo(height=2, width=3, k=[5.0, 0.0, 1.0, 0.0, 6.0, 1.0, 0.0, 0.0, 1.0])  # p left at zeros
    calibration = camera_info_to_calibration(msg)
    np.testing.assert_array_equal(calibration.P, [[5, 0, 1, 0], [0, 6, 1, 0], [0, 0, 1, 0]])


def test_uncalibrated_camera_info_is_refused():
    with pytest.raises(ValueError, match="intrinsics"):
        camera_info_to_calibration(CameraInfo(height=2, width=3))


@SETTINGS
@given(st.integers(1, 4000), st.integers(1, 4000), st.floats(10, 5000), st.floats(10, 5000),
       st.lists(st.floats(-1, 1), max_size=8), st.text("abc_", max_size=10))
def test_calibration_camera_info_round_trip(width, height, fx, fy, distortion, frame):
    calibration = CameraCalibration(K=[[fx, 0, width / 2], [0, fy, height / 2], [0, 0, 1]], width=width,
                                    height=height, D=distortion, distortion_model="plumb_bob", frame_id=frame)
    msg = calibration_to_camera_info(calibration)
    assert msg.header.frame_id == frame
    np.testing.assert_array_equal(np.asarray(msg.r).reshape(3, 3), np.eye(3))
    back = camera_info_to_calibration(msg)
    np.testing.assert_array_equal(back.K, calibration.K)
    np.testing.assert_array_equal(back.D, calibration.D)
    np.testing.assert_array_equal(back.P, calibration.P)
    assert (back.width, back.height, back.distortion_model, back.frame_id) == (width, height, "plumb_bob", frame)


def test_an_is_bigendian_flag_other_than_0_or_1_is_refused():
    msg = image("mono16", bytes(8), height=2, width=2, step=4)
    msg.is_bigendian = 2
    with pytest.raises(MessageLayoutError, match="is_bigendian is 2; it must be 0 or 1"):
        image_to_array(msg)


@pytest.mark.parametrize("field, index", [("d", 0), ("p", 2)])
def test_non_finite_distortion_or_projection_is_refused(field, index):
    msg = CameraInfo(width=64, height=48, k=[50.0, 0, 32, 0, 50.0, 24, 0, 0, 1], d=[0.1, 0.0, 0.0, 0.0, 0.0],
                     p=[50.0, 0, 32, 0, 0, 50.0, 24, 0, 0, 0, 1, 0])
    values = list(getattr(msg, field))
    values[index] = float("nan")
    setattr(msg, field, values)
    with pytest.raises(ValueError, match=f"CameraInfo {field.upper()} has non-finite values"):
        camera_info_to_calibration(msg)
