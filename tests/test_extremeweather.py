"""ExtremeWeather climo_YYYY.h5 reader/writer on small files in the released layout."""

import os
import pickle

import h5py
import numpy as np
import pytest

from climjax.data import extremeweather
from climjax.data.errors import DataError
from climjax.data.variables import CLASS_IDS, EXTREMEWEATHER_CHANNELS

H, W, C = 24, 40, len(EXTREMEWEATHER_CHANNELS)


def _images(n: int) -> np.ndarray:
  rng = np.random.default_rng(0)
  return rng.normal(size=(n, H, W, C)).astype(np.float32)


# (ymin, xmin, ymax, xmax) pixels; one box reaches x = 35 > H - 1, which only the
# longitude axis holds, so the column order can be read off the values.
BOXES = [
  np.array([[2, 3, 10, 35], [12, 1, 20, 9]], np.float32),
  np.zeros((0, 4), np.float32),
  np.array([[0, 0, 23, 39]], np.float32),
  np.array([[5, 20, 9, 30], [1, 2, 3, 4], [10, 10, 18, 22]], np.float32),
]
LABELS = [
  np.array([CLASS_IDS["AR"], CLASS_IDS["TC"]]),
  np.zeros(0, np.int64),
  np.array([CLASS_IDS["ETC"]]),
  np.array([CLASS_IDS["TD"], CLASS_IDS["TC"], CLASS_IDS["TC"]]),
]


def _released_copy(path) -> None:
  """Drop the attributes our writer adds, as in the released files."""
  with h5py.File(path, "a") as f:
    for key in list(f.attrs):
      del f.attrs[key]


@pytest.mark.parametrize("order", ["yxyx", "xxyy"])
def test_both_box_orders_read_back_exactly(tmp_path, order):
  path = tmp_path / "climo_1979.h5"
  images = _images(len(BOXES))
  extremeweather.write_extremeweather(path, images, BOXES, LABELS, box_order=order)
  with h5py.File(path) as f:  # the released layout
    assert f["images"].shape == (4, C, H, W) and f["images"].dtype == np.float32
    assert f["boxes"].shape == (4, 15, 5) and f["boxes"].dtype == np.int32
    assert np.all(f["boxes"][1] == -1)
    stored = f["boxes"][0, 0]
    expected = [2, 3, 10, 35, 3] if order == "yxyx" else [3, 35, 2, 10, 3]
    np.testing.assert_array_equal(stored, expected)
    np.testing.assert_array_equal(f["images"][2], np.moveaxis(images[2], -1, 0))
  _released_copy(path)

  data = extremeweather.ExtremeWeatherFile(path)  # order detected from the values
  assert data.box_order == order
  assert len(data) == 4 and (data.height, data.width) == (H, W)
  for i, example in enumerate(data):
    np.testing.assert_array_equal(example["image"], images[i])
    assert example["image"].shape == (H, W, C) and example["image"].dtype == np.float32
    np.testing.assert_array_equal(example["boxes"], BOXES[i])
    assert example["boxes"].dtype == np.float32
    np.testing.assert_array_equal(example["labels"], LABELS[i])
  explicit = extremeweather.ExtremeWeatherFile(path, box_order=order)
  np.testing.assert_array_equal(explicit[3]["boxes"], BOXES[3])


def test_random_access_slices_and_channel_subsets(tmp_path):
  path = tmp_path / "climo_1980.h5"
  images = _images(4)
  extremeweather.write_extremeweather(path, images, BOXES, LABELS)
  data = extremeweather.ExtremeWeatherFile(path)
  np.testing.assert_array_equal(data[-1]["image"], images[3])
  batch = data[1:3]
  assert [len(b["boxes"]) for b in batch] == [0, 1]
  np.testing.assert_array_equal(np.stack([b["image"] for b in batch]), images[1:3])
  picked = data.__getitems__([3, 0, 3])
  np.testing.assert_array_equal(picked[0]["image"], images[3])
  np.testing.assert_array_equal(picked[1]["boxes"], BOXES[0])
  boxes, labels = data.boxes(3)
  np.testing.assert_array_equal(boxes, BOXES[3])
  with pytest.raises(IndexError):
    data[4]

  sub = extremeweather.ExtremeWeatherFile(path, channels=["TMQ", "PSL"])
  tmq, psl = EXTREMEWEATHER_CHANNELS.index("TMQ"), EXTREMEWEATHER_CHANNELS.index("PSL")
  np.testing.assert_array_equal(sub[2]["image"], images[2][..., [tmq, psl]])
  reordered = list(reversed(EXTREMEWEATHER_CHANNELS))
  np.testing.assert_array_equal(
    extremeweather.ExtremeWeatherFile(path, channels=reordered)[1:3][1]["image"],
    images[2][..., ::-1],
  )

  # One image per HDF5 chunk: reading image i touches only image i.
  with h5py.File(path) as f:
    assert f["images"].chunks == (1, C, H, W)
  # The reader travels to worker processes and reopens the file there.
  again = pickle.loads(pickle.dumps(data))
  np.testing.assert_array_equal(again[0]["image"], images[0])
  data.close()


def test_ambiguous_order_is_an_error_not_a_guess(tmp_path):
  path = tmp_path / "climo_1981.h5"
  small = [np.array([[2, 3, 10, 12]], np.float32), np.array([[4, 5, 9, 20]], np.float32)]
  extremeweather.write_extremeweather(path, _images(2), small, [np.array([1]), np.array([3])])
  _released_copy(path)
  with pytest.raises(DataError, match="ambiguous.*box_order") as e:
    extremeweather.ExtremeWeatherFile(path)
  assert str(path) in str(e.value) and "boxes" in str(e.value)
  # Told the order, it reads.
  data = extremeweather.ExtremeWeatherFile(path, box_order="yxyx")
  np.testing.assert_array_equal(data[1]["boxes"], small[1])
  swapped = extremeweather.ExtremeWeatherFile(path, box_order="xxyy")
  np.testing.assert_array_equal(swapped[0]["boxes"], [[10, 2, 12, 3]])


def test_wrong_explicit_order_is_caught(tmp_path):
  path = tmp_path / "climo_1982.h5"
  extremeweather.write_extremeweather(path, _images(4), BOXES, LABELS, box_order="yxyx")
  with pytest.raises(DataError, match="box_order='xxyy'") as e:
    extremeweather.ExtremeWeatherFile(path, box_order="xxyy")
  assert str(path) in str(e.value)


def _raw_file(path, images: np.ndarray | None, boxes: np.ndarray | None) -> None:
  with h5py.File(path, "w") as f:
    if images is not None:
      f["images"] = images
    if boxes is not None:
      f["boxes"] = boxes


@pytest.mark.parametrize(
  "images, boxes, message, variable",
  [
    (np.zeros((2, C, H, W), np.float32), None, "expected datasets 'images' and 'boxes'", None),
    (np.zeros((2, H, W, C), np.float32), np.full((2, 15, 5), -1), r"\(N, 16, H, W\)", "images"),
    (np.zeros((2, C, H, W), np.int16), np.full((2, 15, 5), -1), "floating-point", "images"),
    (np.zeros((2, C, H, W), np.float32), np.full((3, 15, 5), -1), "max_boxes, 5", "boxes"),
    (
      np.zeros((1, C, H, W), np.float32),
      np.array([[[1, 2, 3, 4, 7]] + [[-1] * 5] * 14]),
      "class ids",
      "boxes",
    ),
    (
      np.zeros((1, C, H, W), np.float32),
      np.array([[[30, 2, 50, 4, 1]] + [[-1] * 5] * 14]),
      "fit neither column order",
      "boxes",
    ),
  ],
)
def test_malformed_files(tmp_path, images, boxes, message, variable):
  path = tmp_path / "bad.h5"
  _raw_file(path, images, boxes)
  with pytest.raises(DataError, match=message) as e:
    extremeweather.ExtremeWeatherFile(path)
  text = str(e.value)
  assert str(path) in text and "\n" not in text
  if variable:
    assert f"variable {variable}" in text


def test_missing_and_unreadable_files(tmp_path):
  with pytest.raises(DataError, match="file not found"):
    extremeweather.ExtremeWeatherFile(tmp_path / "climo_2000.h5")
  path = tmp_path / "junk.h5"
  path.write_bytes(b"\x89HDF\r\n" + os.urandom(64))
  with pytest.raises(DataError, match="cannot be read as HDF5") as e:
    extremeweather.ExtremeWeatherFile(path)
  assert str(path) in str(e.value)


def test_writer_refuses_what_the_layout_cannot_hold(tmp_path):
  path = tmp_path / "x.h5"
  with pytest.raises(ValueError, match="at most 15"):
    extremeweather.write_extremeweather(
      path, _images(1), [np.tile([[0, 0, 1, 1]], (16, 1))], [np.ones(16, int)]
    )
  with pytest.raises(ValueError, match="leaves the 24x40 image"):
    extremeweather.write_extremeweather(path, _images(1), [[[0, 0, 30, 5]]], [[1]])
  assert not os.listdir(tmp_path)
