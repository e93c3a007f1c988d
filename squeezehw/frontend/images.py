"""Photographs in the ImageFolder layout -> uint8 (N, C, H, W) pixels and class indices.

Layout: ``ROOT/<class>/<image>``; classes are the sub-folders in sorted order and a class's index
is its position (torchvision's ``ImageFolder`` rule, so ImageNet folders named by WordNet id get
torchvision's class indices).  Preprocessing is torchvision's evaluation transform without the
normalisation (which the quantizer folds into conv1): ``Resize(resize)`` (shorter side to
``resize``, bilinear, longer side truncated like torchvision) then ``CenterCrop((H, W))``, then
RGB or grey bytes.

Unreadable files: an evaluation that silently drops images would report an accuracy over a
different set than the user asked for, so by default an unreadable image is an error naming the
file.  Images over Pillow's decompression-bomb limit count as unreadable.  16-bit grey images are
scaled onto 0..255 (Pillow alone would clip them to white).  With ``skip_unreadable=True`` such files are skipped, counted and listed in
``ImageSet.skipped`` (the command line prints the count).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["ImageFolderError", "ImageSet", "list_image_folder", "load_images", "load_image_folder",
           "open_image", "preprocess"]

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolderError(UserError, ValueError):
    """A missing or empty image folder, or an unreadable image."""


@dataclass
class ImageSet:
    images: np.ndarray                  # uint8 (N, C, H, W)
    labels: np.ndarray                  # int64 (N,)
    classes: list                       # folder names, index = class
    files: list = field(default_factory=list)
    skipped: list = field(default_factory=list)    # (file, reason) of unreadable images


def list_image_folder(root) -> tuple[list[Path], np.ndarray, list[str]]:
    """(files, labels, classes) of an ImageFolder tree, files sorted by class then name."""
    root = Path(root)
    if not root.is_dir():
        raise ImageFolderError(f"{root}: no such image folder; give a folder with one sub-folder "
                               "per class (ImageFolder layout: ROOT/<class>/<image>.jpg)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ImageFolderError(f"{root}: has no class sub-folders; expected ROOT/<class>/<image>.jpg")
    files, labels = [], []
    for i, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.is_file() and f.suffix.lower() in EXTENSIONS:
                files.append(f)
                labels.append(i)
    if not files:
        raise ImageFolderError(f"{root}: the class folders contain no images "
                               f"(looked for {', '.join(EXTENSIONS)})")
    return files, np.asarray(labels, np.int64), classes


def preprocess(img, *, height: int, width: int, channels: int, resize: int | None) -> np.ndarray:
    """A PIL image -> uint8 (C, H, W): Resize(shorter side = resize) + CenterCrop((H, W))."""
    from PIL import Image
    img = _to_8bit(img)
    img = img.convert("L" if channels == 1 else "RGB")
    if resize is not None:
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        if short != resize:
            new_long = int(resize * long / short)     # torchvision truncates the longer side
            size = (resize, new_long) if w <= h else (new_long, resize)
            img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    if w < width or h < height:
        raise ValueError(f"image is {w}x{h} after resizing, smaller than the {width}x{height} crop")
    left, top = int(round((w - width) / 2.0)), int(round((h - height) / 2.0))
    img = img.crop((left, top, left + width, top + height))
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


# 16-bit grey images: Pillow's convert("L") clips every value above 255 to white, so scale the full
# 16-bit range onto 0..255 first (v * 255 / 65535, rounded: 257 * k -> k exactly)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_8bit(img):
    from PIL import Image
    if img.mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(img).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError(f"{img.mode} image with values {a.min()}..{a.max()} outside 0..65535; "
                             "save it as an 8- or 16-bit image")
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")
    if img.mode == "F":
        raise ValueError("floating-point image (mode F); save it as an 8- or 16-bit image")
    return img


def open_image(f, *, height: int, width: int, channels: int, resize: int | None) -> np.ndarray:
    """Open and preprocess one image file; every failure to read it is a ValueError or OSError
    (including images over Pillow's decompression-bomb limit, refused rather than decoded)."""
    import warnings

    from PIL import Image, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as img:
                return preprocess(img, height=height, width=width, channels=channels, resize=resize)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"too large to decode safely ({str(e).split('could be')[0].strip().rstrip(',')})") from None
    except UnidentifiedImageError as e:
        raise ValueError(f"not an image Pillow can read ({e})") from None
    except MemoryError:
        raise ValueError("too large to decode in memory") from None


def load_images(files, *, height: int, width: int, channels: int, resize: int | None,
                skip_unreadable: bool = False, progress: bool = True,
                skip_option: str | None = None) -> tuple[np.ndarray, list, list]:
    """Load and preprocess ``files``; returns (images, indices of the files kept, skipped).
    ``skip_option``: the command-line option that skips unreadable images, named in the error."""
    from tqdm import tqdm
    if channels not in (1, 3):
        raise ImageFolderError(f"models with {channels} input channels cannot read photographs; "
                               "use 1 (grey) or 3 (RGB)")
    out = np.empty((len(files), channels, height, width), np.uint8)
    kept, skipped = [], []
    # a transient bar (cleared when done or failed, so an error stays one line), only on a terminal
    with tqdm(total=len(files), desc="loading images", unit="img", disable=None if progress else True,
              leave=False, file=sys.stderr) as bar:
        for i, f in enumerate(files):
            bar.update(1)
            try:
                out[len(kept)] = open_image(f, height=height, width=width, channels=channels, resize=resize)
            except (OSError, ValueError) as e:
                if not skip_unreadable:
                    fix = f"remove or replace it, or pass {skip_option}" if skip_option else "remove or replace it"
                    why = e.strerror if isinstance(e, OSError) and e.strerror else e
                    raise ImageFolderError(f"{f}: cannot read this image ({why}); {fix}") from None
                skipped.append((str(f), str(e)))
                continue
            kept.append(i)
    return out[:len(kept)], kept, skipped


def load_image_folder(root, *, height: int, width: int, channels: int, resize: int | None = None,
                      limit: int | None = None, skip_unreadable: bool = False,
                      progress: bool = True, skip_option: str | None = None) -> ImageSet:
    """Load an ImageFolder tree (at most ``limit`` images, the first in sorted order)."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ImageFolderError(f"limit must be a positive number of images, got {limit!r}")
    files, labels, classes = list_image_folder(root)
    files, labels = files[:limit], labels[:limit]
    images, kept, skipped = load_images(files, height=height, width=width, channels=channels,
                                        resize=resize, skip_unreadable=skip_unreadable,
                                        progress=progress, skip_option=skip_option)
    if not kept:
        raise ImageFolderError(f"{root}: none of the {len(files)} images could be read")
    return ImageSet(images, labels[kept], classes, [files[i] for i in kept], skipped)
