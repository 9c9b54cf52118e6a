"""Reader and writer for the released ExtremeWeather files (`climo_YYYY.h5`).

Each file holds `images`, (N, 16, 768, 1152) float32 in NCHW order with the
channels of `variables.EXTREMEWEATHER_CHANNELS`, and `boxes`, (N, 15, 5) int32
padded with rows of -1. `ExtremeWeatherFile` reads one image at a time with
h5py (a year is 62 GB; nothing else is loaded) and hands back NHWC images and
boxes as (ymin, xmin, ymax, xmax) pixels with y on the latitude axis.

The box columns are (ymin, xmin, ymax, xmax, class) in some copies and
(xmin, xmax, ymin, ymax, class) in others. The order is either given
(`box_order="yxyx"` or `"xxyy"`, or the file's `box_order` attribute, which
`write_extremeweather` records) or read off the values of the whole file:
an order is possible only if every box has min <= max on both axes and y
within [0, H], x within [0, W]. When both orders fit every box (small boxes
away from the wide edge) the reader refuses to guess and asks for
`box_order`; swapping the axes silently would corrupt every label.

Images are checked as they are read: the layout has no missing values, so a
NaN or Inf in a channel read is a `DataError` naming the image and channel
(`check_finite=False` hands them back as they are, for a caller that fills
and counts them: the tfds builders' `data.nonfinite="mask"`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence

import h5py
import numpy as np

from climjax.data.errors import DataError
from climjax.data.variables import CLASS_NAMES_WITH_FRONTS, EXTREMEWEATHER_CHANNELS

BOX_ORDERS: tuple[str, ...] = ("yxyx", "xxyy")
MAX_BOXES = 15  # rows per image in the released files
PAD = -1

# Column of (ymin, xmin, ymax, xmax) in the stored rows, for each order.
_COLUMNS: dict[str, tuple[int, int, int, int]] = {
  "yxyx": (0, 1, 2, 3),
  "xxyy": (2, 0, 3, 1),
}


def _box_violations(yxyx: np.ndarray, height: int, width: int) -> np.ndarray:
  """Per box, whether it breaks min <= max or lies outside a height x width image."""
  ymin, xmin, ymax, xmax = (yxyx[..., j] for j in range(4))
  return (
    (ymin > ymax)
    | (xmin > xmax)
    | (ymin < 0)
    | (xmin < 0)
    | (ymax > height)  # exclusive ends may reach the edge itself
    | (xmax > width)
  )


def _describe_row(rows: np.ndarray, where: tuple[np.ndarray, ...]) -> str:
  image, slot = int(where[0][0]), int(where[1][0])
  return f"image {image} row {slot} = {rows[image, slot].tolist()}"


class ExtremeWeatherFile:
  """Random access to one `climo_YYYY.h5` file: `len(f)`, `f[i]`, `f[a:b]`, `iter(f)`.

  `f[i]` is a dict: "image" (H, W, C) float32 NHWC, "boxes" (k, 4) float32
  (ymin, xmin, ymax, xmax) in pixels, "labels" (k,) int64 class ids
  (`variables.CLASS_IDS`). A slice or a sequence of indices gives a list of
  such dicts. The HDF5 file is opened on first use and reopened in a forked
  worker, so the object can be handed to data-loading processes.
  """

  def __init__(
    self,
    path: str | os.PathLike,
    *,
    box_order: str | None = None,
    channels: Sequence[str] | None = None,
    check_finite: bool = True,
  ):
    self.path = os.fspath(path)
    self.check_finite = check_finite
    if box_order is not None and box_order not in BOX_ORDERS:
      raise ValueError(f"box_order must be one of {BOX_ORDERS} or None, got {box_order!r}")
    self.channels = tuple(channels) if channels is not None else EXTREMEWEATHER_CHANNELS
    unknown = [c for c in self.channels if c not in EXTREMEWEATHER_CHANNELS]
    if unknown:
      raise ValueError(f"channels {unknown} are not among {EXTREMEWEATHER_CHANNELS}")
    self._channel_index = [EXTREMEWEATHER_CHANNELS.index(c) for c in self.channels]
    self._file: h5py.File | None = None
    self._pid = None

    f = self._h5()
    if "images" not in f or "boxes" not in f:
      raise DataError(
        self.path, f"expected datasets 'images' and 'boxes', found {sorted(f.keys())}"
      )
    images, boxes = f["images"], f["boxes"]
    if images.ndim != 4 or images.shape[1] != len(EXTREMEWEATHER_CHANNELS):
      raise DataError(
        self.path,
        f"expected shape (N, {len(EXTREMEWEATHER_CHANNELS)}, H, W) (NCHW), found {images.shape}",
        "images",
      )
    if images.dtype.kind != "f":
      raise DataError(self.path, f"expected floating-point values, found {images.dtype}", "images")
    if boxes.ndim != 3 or boxes.shape[2] != 5 or boxes.shape[0] != images.shape[0]:
      raise DataError(
        self.path,
        f"expected shape ({images.shape[0]}, max_boxes, 5), found {boxes.shape}",
        "boxes",
      )
    self.num_images, _, self.height, self.width = images.shape
    # Files written by `write_extremeweather` record their order; the released ones do not.
    recorded = f.attrs.get("box_order")
    if box_order is None and recorded is not None:
      box_order = recorded.decode() if isinstance(recorded, bytes) else str(recorded)
      if box_order not in BOX_ORDERS:
        raise DataError(self.path, f"attribute box_order={box_order!r} is not one of {BOX_ORDERS}")
    try:
      rows = np.asarray(boxes[...])
    except Exception as e:  # noqa: BLE001 - a failed read is a corrupt file
      raise DataError(self.path, f"cannot read ({type(e).__name__}: {e})", "boxes") from e
    self.box_order, self._boxes, self._labels, self._valid = self._parse_boxes(rows, box_order)

  # -- boxes ---------------------------------------------------------------

  def _parse_boxes(self, rows: np.ndarray, box_order: str | None):
    if rows.dtype.kind == "f" and not np.all(np.isfinite(rows)):
      raise DataError(self.path, "holds non-finite values", "boxes")
    padding = np.all(rows == PAD, axis=-1)
    valid = ~padding
    labels = rows[..., 4]
    bad_class = valid & ((labels < 0) | (labels >= len(CLASS_NAMES_WITH_FRONTS)))
    if bad_class.any():
      raise DataError(
        self.path,
        f"class ids must lie in [0, {len(CLASS_NAMES_WITH_FRONTS) - 1}] (rows of -1 are "
        f"padding), found {_describe_row(rows, np.nonzero(bad_class))}",
        "boxes",
      )
    candidates = {
      order: rows[..., list(_COLUMNS[order])].astype(np.float32) for order in BOX_ORDERS
    }
    broken = {
      order: valid & _box_violations(yxyx, self.height, self.width)
      for order, yxyx in candidates.items()
    }
    image_size = f"{self.height}x{self.width}"
    if box_order is not None:
      if broken[box_order].any():
        raise DataError(
          self.path,
          f"with box_order={box_order!r} a box has min > max or leaves the {image_size} "
          f"image: {_describe_row(rows, np.nonzero(broken[box_order]))}",
          "boxes",
        )
      order = box_order
    elif not valid.any():
      order = None  # no boxes: nothing to decide
    else:
      fits = [order for order in BOX_ORDERS if not broken[order].any()]
      if len(fits) == 2:
        raise DataError(
          self.path,
          f"box column order is ambiguous: all {int(valid.sum())} boxes fit both "
          f"(ymin, xmin, ymax, xmax) and (xmin, xmax, ymin, ymax) on a {image_size} image; "
          "pass box_order='yxyx' or 'xxyy'",
          "boxes",
        )
      if not fits:
        raise DataError(
          self.path,
          "boxes fit neither column order: as yxyx "
          f"{_describe_row(rows, np.nonzero(broken['yxyx']))}, as xxyy "
          f"{_describe_row(rows, np.nonzero(broken['xxyy']))} on a {image_size} image",
          "boxes",
        )
      order = fits[0]
    yxyx = candidates[order or "yxyx"]
    return order, yxyx, labels.astype(np.int64), valid

  # -- access ----------------------------------------------------------------

  def _h5(self) -> h5py.File:
    # h5py handles must not cross fork(); reopen in each process that reads.
    if self._file is None or self._pid != os.getpid():
      try:
        self._file = h5py.File(self.path, "r")
      except FileNotFoundError:
        raise DataError(self.path, "file not found") from None
      except Exception as e:  # noqa: BLE001 - any open failure means the file is unusable
        raise DataError(self.path, f"cannot be read as HDF5 ({type(e).__name__}: {e})") from e
      self._pid = os.getpid()
    return self._file

  def __len__(self) -> int:
    return self.num_images

  def _read_images(self, indices: np.ndarray) -> np.ndarray:
    """Images at sorted unique `indices` as (n, H, W, C) float32."""
    images = self._h5()["images"]
    every_channel = self._channel_index == list(range(images.shape[1]))
    # h5py takes one index list per read: the channel list when reading a subset.
    channels = sorted(set(self._channel_index))
    try:
      if every_channel and len(indices) and np.all(np.diff(indices) == 1):
        block = images[int(indices[0]) : int(indices[-1]) + 1]
      elif every_channel:
        block = images[indices]
      else:
        block = np.stack([images[int(i), channels] for i in indices])
    except Exception as e:  # noqa: BLE001 - a failed read is a corrupt or truncated file
      raise DataError(self.path, f"cannot read ({type(e).__name__}: {e})", "images") from e
    if not every_channel:
      block = block[:, [channels.index(c) for c in self._channel_index]]
    finite = np.isfinite(block) if self.check_finite else True
    if not np.all(finite):  # the format has no missing values: a NaN or Inf is a broken file
      n, c = (int(k) for k in np.argwhere(~finite)[0][:2])
      raise DataError(
        self.path,
        f"image {int(indices[n])} channel {self.channels[c]} holds non-finite values "
        "(NaN or Inf; the ExtremeWeather layout has no missing values)",
        "images",
      )
    return np.ascontiguousarray(np.moveaxis(block, 1, -1), dtype=np.float32)

  def _example(self, i: int, image: np.ndarray) -> dict[str, np.ndarray]:
    keep = self._valid[i]
    return {
      "image": image,
      "boxes": self._boxes[i][keep],
      "labels": self._labels[i][keep],
    }

  def __getitem__(self, index):
    if isinstance(index, int | np.integer):
      i = int(index)
      if not -self.num_images <= i < self.num_images:
        raise IndexError(f"index {index} out of range for {self.num_images} images in {self.path}")
      i %= self.num_images
      return self._example(i, self._read_images(np.array([i]))[0])
    if isinstance(index, slice):
      wanted = np.arange(self.num_images)[index]
    else:
      wanted = np.asarray(index, np.int64)
      if wanted.ndim != 1:
        raise IndexError(f"expected an int, a slice or a 1-D sequence of ints, got {index!r}")
      if np.any((wanted < -self.num_images) | (wanted >= self.num_images)):
        raise IndexError(f"indices out of range for {self.num_images} images in {self.path}")
      wanted %= self.num_images
    unique, inverse = np.unique(wanted, return_inverse=True)
    images = self._read_images(unique)
    return [self._example(int(i), images[j]) for i, j in zip(wanted, inverse, strict=True)]

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Batch read for random-access pipelines (the `__getitems__` source protocol)."""
    return self[list(indices)]

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    for i in range(self.num_images):
      yield self[i]

  def boxes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (k, 4) yxyx pixels and labels (k,) of image `i`, without reading the image."""
    keep = self._valid[i]
    return self._boxes[i][keep], self._labels[i][keep]

  def close(self) -> None:
    if self._file is not None and self._pid == os.getpid():
      self._file.close()
    self._file = None

  def __enter__(self) -> ExtremeWeatherFile:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __getstate__(self) -> dict:
    state = dict(self.__dict__)
    state["_file"], state["_pid"] = None, None
    return state


def write_extremeweather(
  path: str | os.PathLike,
  images_nhwc: np.ndarray,
  boxes_list: Sequence[np.ndarray],
  labels_list: Sequence[np.ndarray],
  *,
  box_order: str = "yxyx",
  max_boxes: int = MAX_BOXES,
) -> None:
  """Writes images and boxes in the layout of the released files, atomically.

  `images_nhwc` is (N, H, W, 16) in the channel order of
  `variables.EXTREMEWEATHER_CHANNELS`; it is stored NCHW float32, one image per
  HDF5 chunk. `boxes_list[i]` is (k, 4) (ymin, xmin, ymax, xmax) pixels, stored
  rounded to int32 in the column order `box_order`, with class ids from
  `labels_list[i]`, padded with -1 rows to `max_boxes`.
  """
  if box_order not in BOX_ORDERS:
    raise ValueError(f"box_order must be one of {BOX_ORDERS}, got {box_order!r}")
  images = np.asarray(images_nhwc, np.float32)
  if images.ndim != 4 or images.shape[-1] != len(EXTREMEWEATHER_CHANNELS):
    raise ValueError(
      f"images_nhwc must be (N, H, W, {len(EXTREMEWEATHER_CHANNELS)}), got {images.shape}"
    )
  n, height, width, _ = images.shape
  if len(boxes_list) != n or len(labels_list) != n:
    raise ValueError(
      f"{n} images but {len(boxes_list)} box arrays and {len(labels_list)} label arrays"
    )
  rows = np.full((n, max_boxes, 5), PAD, np.int32)
  inverse = np.argsort(_COLUMNS[box_order])  # yxyx column j -> stored column
  for i, (boxes, labels) in enumerate(zip(boxes_list, labels_list, strict=True)):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    if len(boxes) != len(labels):
      raise ValueError(f"image {i}: {len(boxes)} boxes but {len(labels)} labels")
    if len(boxes) > max_boxes:
      raise ValueError(f"image {i}: {len(boxes)} boxes, the layout holds at most {max_boxes}")
    if _box_violations(boxes, height, width).any():
      raise ValueError(f"image {i}: a box has min > max or leaves the {height}x{width} image")
    if np.any((labels < 0) | (labels >= len(CLASS_NAMES_WITH_FRONTS))):
      raise ValueError(f"image {i}: class ids must lie in [0, {len(CLASS_NAMES_WITH_FRONTS) - 1}]")
    k = len(boxes)
    rows[i, :k, :4] = np.rint(boxes)[:, inverse]
    rows[i, :k, 4] = labels

  path = os.fspath(path)
  fd, tmp = tempfile.mkstemp(
    dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=".h5"
  )
  os.close(fd)
  try:
    with h5py.File(tmp, "w") as f:
      stored = f.create_dataset(
        "images",
        shape=(n, images.shape[-1], height, width),
        dtype=np.float32,
        chunks=(1, images.shape[-1], height, width) if n else None,
      )
      for i in range(n):  # one image at a time keeps the NCHW copy small
        stored[i] = np.moveaxis(images[i], -1, 0)
      f.create_dataset("boxes", data=rows)
      f.attrs["box_order"] = box_order
      f.attrs["channels"] = ",".join(EXTREMEWEATHER_CHANNELS)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
