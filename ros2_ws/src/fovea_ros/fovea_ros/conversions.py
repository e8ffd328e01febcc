"""Conversions between ROS 2 sensor messages and numpy arrays.

The glue's only job is moving bytes; these functions do no math on the values.

PointCloud2 -> numpy (:func:`pointcloud2_to_array`)
    * The result is a numpy structured array whose dtype is built from ``fields``: one numpy field per
      PointField, at the PointField's ``offset``, with the ``datatype`` mapped as INT8->i1, UINT8->u1,
      INT16->i2, UINT16->u2, INT32->i4, UINT32->u4, FLOAT32->f4, FLOAT64->f8. A field with
      ``count > 1`` becomes a sub-array of shape ``(count,)``; ``count == 0`` is treated as 1 (some drivers
      write 0). The dtype's itemsize is ``point_step``, so bytes between and after fields (padding) are
      skipped, never read.
    * ``x``, ``y`` and ``z`` are coordinates wherever they appear (REP-103): each must be FLOAT32 or FLOAT64
      with count 1 (0 read as 1), else :class:`XyzFieldError` (a ``uint8`` ``x`` read as metres, or an ``x``
      of count 2, would be silently wrong numbers or a crash further on).
    * ``is_bigendian`` selects the byte order of every multi-byte field (``>`` or ``<``). The returned
      dtype keeps the message's byte order (that is what makes the view zero-copy); values read correctly
      either way. Use ``ensure_native_byte_order`` before handing the array to code that needs native
      order (torch, C extensions).
    * ``require_xyz=True`` (for code that treats the cloud as points in space): x, y, z must exist
      (:class:`MissingXyzError`), and the coordinates must look like distances: when most finite points have
      a coordinate beyond 1e6 m or a denormal-small non-zero one (below 1e-20 m), the bytes are not what the
      header says (typically big-endian data flagged little-endian, where ~96 % of byte-swapped float32
      lidar points land there against none of the real ones) and :class:`ImplausibleXyzError` refuses it.
    * ``row_step`` is the byte distance between the starts of consecutive rows. It must be at least
      ``width * point_step``; anything beyond that is row padding and is skipped through strides.
      ``data`` must hold exactly ``height * row_step`` bytes.
    * Shape: ``(width,)`` when ``height == 1`` (unorganized cloud), ``(height, width)`` when
      ``height > 1`` (organized cloud, row-major as the sensor wrote it), ``(0,)`` when the cloud is
      empty with ``height == 0``.
    * NaN/Inf points are kept, so organized clouds keep their pixel grid; :func:`drop_non_finite_xyz`
      removes them explicitly and says how many it removed.
    * The array is a view onto ``msg.data`` (no copy) unless ``copy=True``.

numpy -> PointCloud2 (:func:`array_to_pointcloud2`)
    Fields are written packed (no padding), in the dtype's field order, little-endian unless
    ``is_bigendian=True``; ``point_step`` is the packed size and ``row_step = width * point_step``. A 1-D
    array becomes ``height = 1``, a 2-D array ``(H, W)`` an organized cloud. ``is_dense`` is True exactly
    when the array has ``x``, ``y``, ``z`` fields and all of them are finite (or has no xyz fields).
    The header is passed in (stamp and frame are the caller's: outputs carry the input's stamp).

Image <-> numpy (:func:`image_to_array`, :func:`array_to_image`)
    Supported encodings: see ``IMAGE_ENCODINGS``. Single-channel images are ``(height, width)`` arrays,
    multi-channel ``(height, width, channels)`` with channels in the encoding's order (``bgr8`` stays
    B, G, R: no channel shuffling). ``step`` is the byte distance between rows and may exceed
    ``width * channels * bytes_per_channel`` (row padding, skipped through strides); ``data`` must hold
    exactly ``height * step`` bytes. ``is_bigendian`` sets the byte order of 16- and 32-bit channels.
    Decoding is zero-copy unless ``copy=True``. Encoding writes ``step = width * channels * bytes`` and
    little-endian unless asked otherwise. Other encodings raise :class:`UnsupportedEncodingError`.

CameraInfo <-> :class:`fovea_core.geometry.camera.CameraCalibration`
    ``K``, ``D``, ``P``, ``width``, ``height``, ``distortion_model`` and ``header.frame_id`` are carried.
    A ``P`` of all zeros (an uncalibrated driver) is read as "not given", and the calibration then
    derives ``P = [K | 0]``. ``R``, binning and ROI are not carried (the cores work on full-resolution
    images and do not rectify); the reverse helper writes ``R = I``, no binning, empty ROI.
"""
from __future__ import annotations

import array
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from fovea_core.geometry.camera import CameraCalibration


class MessageLayoutError(ValueError):
    """A message's size fields (``point_step``, ``row_step``, ``step``, data length, offsets) disagree.

    ``reason`` is the drop reason a node counts it under (None: the node's generic "malformed <what>");
    the subclasses below have reasons of their own, so /diagnostics tells the cases apart.
    """

    reason: str | None = None


class XyzFieldError(MessageLayoutError):
    """A field named x, y or z that is not a FLOAT32/FLOAT64 scalar."""

    reason = "bad xyz field type"


class MissingXyzError(MessageLayoutError):
    """A cloud used as points in space has no x, y and z fields."""

    reason = "wrong fields"


class ImplausibleXyzError(MessageLayoutError):
    """Coordinates no sensor produces: the bytes are not in the byte order (or types) the header says."""

    reason = "implausible coordinates"


class UnsupportedEncodingError(ValueError):
    """An Image encoding this module cannot convert."""

    reason = "unsupported encoding"

    def __init__(self, encoding: str):
        self.encoding = encoding
        super().__init__(
            f"unsupported image encoding {encoding!r}; supported encodings: {', '.join(sorted(IMAGE_ENCODINGS))}"
        )


# PointField.datatype -> numpy type character and size (without byte order).
POINTFIELD_NUMPY_TYPES: dict[int, str] = {
    PointField.INT8: "i1",
    PointField.UINT8: "u1",
    PointField.INT16: "i2",
    PointField.UINT16: "u2",
    PointField.INT32: "i4",
    PointField.UINT32: "u4",
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
}
_NUMPY_TYPE_TO_POINTFIELD = {code: datatype for datatype, code in POINTFIELD_NUMPY_TYPES.items()}
_POINTFIELD_NAMES = {PointField.INT8: "INT8", PointField.UINT8: "UINT8", PointField.INT16: "INT16",
                     PointField.UINT16: "UINT16", PointField.INT32: "INT32", PointField.UINT32: "UINT32",
                     PointField.FLOAT32: "FLOAT32", PointField.FLOAT64: "FLOAT64"}
XYZ = ("x", "y", "z")
# Beyond these magnitudes a coordinate is not a distance in metres (see require_xyz in the module docstring).
PLAUSIBLE_XYZ_MAX_M = 1e6
PLAUSIBLE_XYZ_MIN_M = 1e-20
IMPLAUSIBLE_FRACTION = 0.5


def _byte_order(is_bigendian: bool) -> str:
    return ">" if is_bigendian else "<"


def _set_data(msg, buffer: np.ndarray):
    """Store ``buffer``'s bytes in ``msg.data`` and return ``msg``.

    The generated message classes copy ``data`` once in ``__init__`` and once more in the setter, so
    the message is built without data and the bytes go in through the setter as an ``array.array('B')``:
    that is one memcpy by default and none when ``ROS_PYTHON_CHECK_FIELDS=1`` (a ``bytes`` value would
    there be checked element by element).
    """
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(buffer).view(np.uint8).reshape(-1).data)
    msg.data = data
    return msg


# ---------------------------------------------------------------------------------------------- PointCloud2


def pointcloud2_dtype(fields, point_step: int, is_bigendian: bool) -> np.dtype:
    """Structured numpy dtype (itemsize ``point_step``) describing one point of a cloud with ``fields``."""
    order = _byte_order(is_bigendian)
    names, formats, offsets = [], [], []
    occupied = []  # (start, end, name) byte ranges, to reject overlapping fields
    for field in fields:
        if field.datatype not in POINTFIELD_NUMPY_TYPES:
            raise MessageLayoutError(
                f"PointField {field.name!r} has datatype {field.datatype}, not one of "
                f"{sorted(POINTFIELD_NUMPY_TYPES)} (INT8..FLOAT64)"
            )
        if not field.name:
            raise MessageLayoutError("PointField with an empty name")
        if field.name in names:
            raise MessageLayoutError(f"PointField {field.name!r} appears twice")
        base = np.dtype(order + POINTFIELD_NUMPY_TYPES[field.datatype])
        count = max(int(field.count), 1)
        if field.name in XYZ and (field.datatype not in (PointField.FLOAT32, PointField.FLOAT64) or count != 1):
            raise XyzFieldError(
                f"PointField {field.name!r} is {_POINTFIELD_NAMES[field.datatype]} with count {int(field.count)}; "
                "x, y and z must be FLOAT32 or FLOAT64 with count 1"
            )
        start, end = int(field.offset), int(field.offset) + base.itemsize * count
        if end > point_step:
            raise MessageLayoutError(
                f"PointField {field.name!r} spans bytes [{start}, {end}) but point_step is {point_step}"
            )
        for other_start, other_end, other_name in occupied:
            if start < other_end and other_start < end:
                raise MessageLayoutError(f"PointFields {other_name!r} and {field.name!r} overlap")
        occupied.append((start, end, field.name))
        names.append(field.name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(start)
    if not names:
        raise MessageLayoutError("PointCloud2 has no fields")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(point_step)})


def pointcloud2_to_array(msg: PointCloud2, *, copy: bool = False, require_xyz: bool = False) -> np.ndarray:
    """Structured array of a PointCloud2 (semantics in the module docstring); a view unless ``copy``.

    ``require_xyz``: the cloud must be points in space (x, y, z present, plausible magnitudes)."""
    points = _pointcloud2_view(msg)
    if require_xyz:
        check_xyz(points)
    return points.copy() if copy else points


def check_xyz(points: np.ndarray) -> None:
    """Raise :class:`MissingXyzError` / :class:`ImplausibleXyzError` unless ``points`` look like a cloud."""
    names = points.dtype.names or ()
    missing = [n for n in XYZ if n not in names]
    if missing:
        raise MissingXyzError(f"cloud has no {', '.join(missing)} field(s); fields are {list(names)}")
    flat = points.reshape(-1)
    if flat.size == 0:
        return
    with np.errstate(invalid="ignore", over="ignore"):  # garbage bytes are the case being looked for
        magnitude = np.stack([np.abs(flat[n].astype(np.float64)) for n in XYZ], axis=1)
    finite = np.isfinite(magnitude).all(axis=1)
    usable = magnitude[finite]
    if usable.size == 0:
        return  # all NaN: the non-finite filter says so
    odd = ((usable > PLAUSIBLE_XYZ_MAX_M) | ((usable < PLAUSIBLE_XYZ_MIN_M) & (usable > 0))).any(axis=1)
    if odd.mean() > IMPLAUSIBLE_FRACTION:
        raise ImplausibleXyzError(
            f"{odd.mean():.0%} of {len(usable)} finite points have a coordinate beyond {PLAUSIBLE_XYZ_MAX_M:g} m "
            f"or a non-zero one below {PLAUSIBLE_XYZ_MIN_M:g} m: is_bigendian={bool(points.dtype[XYZ[0]].byteorder == '>')}"
            " does not match the data's byte order (or the field types are wrong)"
        )


def _pointcloud2_view(msg: PointCloud2) -> np.ndarray:
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    dtype = pointcloud2_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    shape = (0,) if height == 0 else (width,) if height == 1 else (height, width)
    if row_step < width * point_step:
        raise MessageLayoutError(
            f"row_step {row_step} is smaller than width * point_step = {width} * {point_step}"
        )
    # An empty cloud may come with row_step set and no data; anything else must match exactly.
    if raw.size != height * row_step and not (height * width == 0 and raw.size == 0):
        raise MessageLayoutError(
            f"PointCloud2 data has {raw.size} bytes, expected height * row_step = {height} * {row_step} "
            f"= {height * row_step}"
        )
    if height * width == 0:
        return np.zeros(shape, dtype=dtype)
    # One strided view covers both the packed case and padded rows (row_step > width * point_step):
    # the padding is stepped over, never copied.
    points = np.ndarray(shape=(height, width), dtype=dtype, buffer=raw, strides=(row_step, point_step))
    return points.reshape(shape)


def xyz_array(points: np.ndarray) -> np.ndarray:
    """``(N, 3)`` float64 coordinates of a structured cloud (checked with :func:`check_xyz`), flattened."""
    check_xyz(points)
    flat = points.reshape(-1)
    return np.stack([flat[n] for n in XYZ], axis=1).astype(np.float64)


def drop_non_finite_xyz(points: np.ndarray) -> tuple[np.ndarray, int]:
    """Points whose ``x``, ``y`` and ``z`` are all finite, flattened to 1-D, and how many were dropped."""
    missing = [name for name in ("x", "y", "z") if points.dtype.names is None or name not in points.dtype.names]
    if missing:
        raise ValueError(f"points have no field(s) {missing}; fields are {points.dtype.names}")
    flat = points.reshape(-1)
    finite = np.isfinite(flat["x"]) & np.isfinite(flat["y"]) & np.isfinite(flat["z"])
    kept = flat[finite]
    return kept, int(flat.size - kept.size)


def ensure_native_byte_order(points: np.ndarray) -> np.ndarray:
    """The same values with every field in the machine's byte order (returns ``points`` if already so)."""
    native = points.dtype.newbyteorder("=")
    if native == points.dtype:
        return points
    return points.astype(native)


def _packed_fields(dtype: np.dtype, is_bigendian: bool) -> tuple[list[PointField], np.dtype]:
    """PointFields and the packed output dtype for a structured array's dtype."""
    if dtype.names is None:
        raise ValueError(f"expected a structured array (named fields), got dtype {dtype}")
    order = _byte_order(is_bigendian)
    fields, names, formats, offsets = [], [], [], []
    offset = 0
    for name in dtype.names:
        field_dtype = dtype.fields[name][0]
        base, shape = (field_dtype.base, field_dtype.shape) if field_dtype.subdtype else (field_dtype, ())
        if len(shape) > 1:
            raise ValueError(f"field {name!r} has a {len(shape)}-D sub-array {shape}; PointField count is 1-D")
        code = f"{base.kind}{base.itemsize}"
        if code not in _NUMPY_TYPE_TO_POINTFIELD:
            raise ValueError(
                f"field {name!r} has dtype {base}, which PointField cannot express "
                f"(supported: {', '.join(sorted(_NUMPY_TYPE_TO_POINTFIELD))})"
            )
        count = int(shape[0]) if shape else 1
        out_base = np.dtype(order + code)
        fields.append(PointField(name=name, offset=offset, datatype=_NUMPY_TYPE_TO_POINTFIELD[code], count=count))
        names.append(name)
        formats.append(out_base if not shape else (out_base, shape))
        offsets.append(offset)
        offset += out_base.itemsize * count
    packed = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})
    return fields, packed


def array_to_pointcloud2(points: np.ndarray, header: Header | None = None, *,
                         is_bigendian: bool = False) -> PointCloud2:
    """PointCloud2 holding ``points`` packed (semantics in the module docstring)."""
    points = np.asarray(points)
    if points.ndim not in (1, 2):
        raise ValueError(f"points must be 1-D (unorganized) or 2-D (organized), got shape {points.shape}")
    fields, packed = _packed_fields(points.dtype, is_bigendian)
    height, width = (1, points.shape[0]) if points.ndim == 1 else points.shape
    # Structured-to-structured astype assigns field by field (same names, same order) and converts
    # each field's byte order; padding bytes of the input are not copied.
    packed_points = points.astype(packed, copy=False)
    names = points.dtype.names
    # every value of x, y and z finite (sub-array fields too: a reader refuses those, the writer need not)
    is_dense = all(bool(np.isfinite(points[name]).all()) for name in XYZ if name in names)
    msg = PointCloud2(
        header=header if header is not None else Header(),
        height=int(height),
        width=int(width),
        fields=fields,
        is_bigendian=bool(is_bigendian),
        point_step=packed.itemsize,
        row_step=packed.itemsize * int(width),
        is_dense=is_dense,
    )
    return _set_data(msg, packed_points)


# ---------------------------------------------------------------------------------------------------- Image


@dataclass(frozen=True)
class ImageEncoding:
    """Channel type and count of one ``sensor_msgs/Image`` encoding."""

    numpy_type: str  # type character and size without byte order, e.g. "u2"
    channels: int


IMAGE_ENCODINGS: dict[str, ImageEncoding] = {
    "rgb8": ImageEncoding("u1", 3),
    "bgr8": ImageEncoding("u1", 3),
    "rgba8": ImageEncoding("u1", 4),
    "bgra8": ImageEncoding("u1", 4),
    "mono8": ImageEncoding("u1", 1),
    "mono16": ImageEncoding("u2", 1),
    "8UC1": ImageEncoding("u1", 1),
    "8UC3": ImageEncoding("u1", 3),
    "8UC4": ImageEncoding("u1", 4),
    "16UC1": ImageEncoding("u2", 1),
    "32FC1": ImageEncoding("f4", 1),
    "32FC3": ImageEncoding("f4", 3),
}


def _image_encoding(encoding: str) -> ImageEncoding:
    try:
        return IMAGE_ENCODINGS[encoding]
    except KeyError:
        raise UnsupportedEncodingError(encoding) from None


def image_to_array(msg: Image, *, copy: bool = False) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` array of an Image (semantics in the module docstring)."""
    spec = _image_encoding(msg.encoding)
    if int(msg.is_bigendian) not in (0, 1):
        raise MessageLayoutError(f"Image is_bigendian is {int(msg.is_bigendian)}; it must be 0 or 1")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    channel = np.dtype(_byte_order(bool(msg.is_bigendian)) + spec.numpy_type)
    pixel_bytes = channel.itemsize * spec.channels
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    if step < width * pixel_bytes:
        raise MessageLayoutError(
            f"Image step {step} is smaller than width * bytes per pixel = {width} * {pixel_bytes} "
            f"({msg.encoding})"
        )
    if raw.size != height * step:
        raise MessageLayoutError(
            f"Image data has {raw.size} bytes, expected height * step = {height} * {step} = {height * step} "
            f"({msg.encoding}, {width}x{height})"
        )
    shape = (height, width, spec.channels)
    if raw.size == 0:
        pixels = np.zeros(shape, dtype=channel)
    else:
        # A strided view skips the row padding without copying; numpy reads unaligned channels too
        # (a step that is not a multiple of the channel size).
        pixels = np.ndarray(shape=shape, dtype=channel, buffer=raw,
                            strides=(step, pixel_bytes, channel.itemsize))
    if spec.channels == 1:
        pixels = pixels[..., 0]
    return pixels.copy() if copy else pixels


def array_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None, *,
                   is_bigendian: bool = False) -> Image:
    """Image with ``step = width * bytes per pixel`` holding ``pixels`` in ``encoding``.

    ``pixels`` must already have the encoding's channel type (no silent casting: a float image written
    as ``mono8`` would lose data) and shape ``(H, W)``/``(H, W, 1)`` for one channel or ``(H, W, C)``.
    """
    spec = _image_encoding(encoding)
    pixels = np.asarray(pixels)
    expected_kind = f"{np.dtype(spec.numpy_type).kind}{np.dtype(spec.numpy_type).itemsize}"
    if f"{pixels.dtype.kind}{pixels.dtype.itemsize}" != expected_kind:
        raise ValueError(f"encoding {encoding!r} needs {np.dtype(spec.numpy_type)} pixels, got {pixels.dtype}")
    if pixels.ndim == 2 and spec.channels == 1:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] != spec.channels:
        raise ValueError(
            f"encoding {encoding!r} needs shape (H, W{'' if spec.channels == 1 else f', {spec.channels}'}), "
            f"got {pixels.shape}"
        )
    height, width = pixels.shape[:2]
    out = pixels.astype(np.dtype(_byte_order(is_bigendian) + spec.numpy_type), copy=False)
    msg = Image(
        header=header if header is not None else Header(),
        height=int(height),
        width=int(width),
        encoding=encoding,
        is_bigendian=int(bool(is_bigendian)),
        step=int(width * spec.channels * out.dtype.itemsize),
    )
    return _set_data(msg, out)


# ----------------------------------------------------------------------------------------------- CameraInfo


def camera_info_to_calibration(msg: CameraInfo) -> CameraCalibration:
    """Calibration of a CameraInfo (``P`` of all zeros is read as absent; see the module docstring).

    Raises ValueError for a size of 0, a K that is not a pinhole matrix, or non-finite D / P."""
    projection = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    for name, values in (("D", msg.d), ("P", projection)):
        if not np.all(np.isfinite(np.asarray(values, dtype=np.float64))):
            raise ValueError(f"CameraInfo {name} has non-finite values")
    return CameraCalibration(
        K=np.asarray(msg.k, dtype=np.float64).reshape(3, 3),
        width=int(msg.width),
        height=int(msg.height),
        D=np.asarray(msg.d, dtype=np.float64),
        P=None if not np.any(projection) else projection,
        distortion_model=str(msg.distortion_model),
        frame_id=str(msg.header.frame_id),
    )


def calibration_to_camera_info(calibration: CameraCalibration, header: Header | None = None) -> CameraInfo:
    """CameraInfo of a calibration (``R = I``; ``header.frame_id`` defaults to the calibration's frame)."""
    if header is None:
        header = Header(frame_id=calibration.frame_id)
    return CameraInfo(
        header=header,
        height=int(calibration.height),
        width=int(calibration.width),
        distortion_model=calibration.distortion_model,
        d=[float(v) for v in calibration.D],
        k=calibration.K.reshape(-1).astype(np.float64),
        r=np.eye(3).reshape(-1),
        p=calibration.P.reshape(-1).astype(np.float64),
    )
