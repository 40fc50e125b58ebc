import numpy as np
import pytest
import tifffile
from PIL import Image

from dropamort.data.images import ImageError, find_images, read_image, resize


def test_formats_depths_and_channels(tmp_path):
  rgb8 = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
  Image.fromarray(rgb8).save(tmp_path / "a.png")
  img, notes = read_image(str(tmp_path / "a.png"), 3)
  np.testing.assert_allclose(img, rgb8 / 255, atol=1e-6)
  assert notes == []
  grey16 = np.array([[0, 65535], [32768, 1]], np.uint16)
  Image.fromarray(grey16).save(tmp_path / "g16.png")
  img, notes = read_image(str(tmp_path / "g16.png"), 3)
  np.testing.assert_allclose(img[..., 1], grey16 / 65535, atol=1e-6)
  assert "grey image repeated to 3 channels" in notes
  rgb16 = (np.random.default_rng(0).random((6, 7, 3)) * 65535).astype(np.uint16)
  tifffile.imwrite(tmp_path / "c.tif", rgb16)
  img, _ = read_image(str(tmp_path / "c.tif"), 3)
  np.testing.assert_allclose(img, rgb16 / 65535, atol=1e-6)
  rgba = np.dstack([rgb8, np.full((4, 5), 7, np.uint8)])
  Image.fromarray(rgba).save(tmp_path / "d.png")
  img, notes = read_image(str(tmp_path / "d.png"), 3)
  np.testing.assert_allclose(img, rgb8 / 255, atol=1e-6)
  assert "alpha channel dropped" in notes
  Image.fromarray(rgb8).save(tmp_path / "e.jpg", quality=95)
  assert read_image(str(tmp_path / "e.jpg"), 3)[0].shape == (4, 5, 3)
  tifffile.imwrite(tmp_path / "f.tif", np.full((3, 3, 3), 0.25, np.float32), photometric="rgb")
  np.testing.assert_allclose(read_image(str(tmp_path / "f.tif"), 3)[0], 0.25)


@pytest.mark.parametrize("name,content,fragment", [
    ("nope.png", None, "no such file"),
    ("empty.png", b"", "not a readable image"),
    ("noise.jpg", bytes(range(256)) * 4, "not a readable image"),
    ("noise.tif", bytes(range(256)) * 4, "not a readable TIFF"),
])
def test_unreadable_files_name_the_file(tmp_path, name, content, fragment):
  path = tmp_path / name
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(ImageError, match=fragment) as err:
    read_image(str(path), 3)
  assert str(path) in str(err.value)


def test_truncated_png_and_bad_values(tmp_path):
  Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(tmp_path / "t.png")
  data = (tmp_path / "t.png").read_bytes()
  (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
  with pytest.raises(ImageError, match="t.png"):
    read_image(str(tmp_path / "t.png"), 3)
  tifffile.imwrite(tmp_path / "nan.tif", np.array([[0.1, np.nan]], np.float32))
  with pytest.raises(ImageError, match="NaN or infinite"):
    read_image(str(tmp_path / "nan.tif"), 3)
  tifffile.imwrite(tmp_path / "five.tif", np.zeros((4, 4, 5), np.uint8), photometric="minisblack",
                   planarconfig="contig")
  with pytest.raises(ImageError, match="has 5 channels; the model takes 3"):
    read_image(str(tmp_path / "five.tif"), 3)


def test_find_images(tmp_path):
  for n in ("b.png", "a.jpg", "notes.txt"):
    (tmp_path / n).write_bytes(b"x")
  assert [p.rsplit("/", 1)[1] for p in find_images(str(tmp_path))] == ["a.jpg", "b.png"]
  assert len(find_images(str(tmp_path / "*.png"))) == 1
  with pytest.raises(ImageError, match="no images found"):
    find_images(str(tmp_path / "*.tif"))


def test_resize_maps_coordinates_by_the_scale():
  """A blob centred at (x, y) lands at (x, y)·s, in the pixel-centre convention."""
  yy, xx = np.mgrid[:200, :240] + 0.5
  x0, y0 = 101.3, 77.9
  blob = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 6.0**2)).astype(np.float32)
  small = resize(blob[..., None], 0.25)[..., 0]
  assert small.shape == (50, 60)
  sy, sx = np.mgrid[:50, :60] + 0.5
  cx, cy = (small * sx).sum() / small.sum(), (small * sy).sum() / small.sum()
  np.testing.assert_allclose([cx / 0.25, cy / 0.25], [x0, y0], atol=0.2)


def test_16bit_colour_png_is_flagged(tmp_path):
  """A 16-bit RGB PNG (written by hand: Pillow cannot) is read, and the note says how."""
  import struct
  import zlib

  h, w = 2, 3
  rows = b"".join(b"\x00" + struct.pack(">" + "H" * 3 * w, *([40000] * 3 * w))
                  for _ in range(h))
  chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                              + struct.pack(">I", zlib.crc32(kind + data)))
  png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
         + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
  (tmp_path / "c16.png").write_bytes(png)
  img, notes = read_image(str(tmp_path / "c16.png"), 3)
  assert img.shape == (2, 3, 3)
  np.testing.assert_allclose(img, 40000 / 65535, atol=1 / 255)
  assert any("16-bit colour PNG" in n for n in notes)
