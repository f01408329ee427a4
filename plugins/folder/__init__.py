"""Real fluorescence images from disk: ``folder:PATH``, ``ermito:PATH`` and ``dsb2018:PATH``.

A dataset reference is ``SCHEME:PATH`` optionally followed by options in URL query form,
``folder:data/cells?channel=1&plane=0``:

* ``channel=N`` picks channel ``N`` (from 0) of multi-channel images (RGB PNG, ``CYX`` or
  ``YXS`` TIFF); ``plane=N`` picks plane ``N`` of 3-D stacks (``ZYX``, ``TYX`` TIFF).  Both
  are ignored for images that are already 2-D.  Without them, a stack or a multi-channel
  image is an error that says which option to add (an RGB image whose channels are equal is
  grey and needs no option).
* ``holdout=none|hash`` chooses the split rule for layouts without split lists (below).

**Layouts.**

``folder:PATH`` (your own data)
    ``PATH/images/NAME.tif`` with ``PATH/masks/NAME.tif`` (the mask may also be called
    ``NAME_mask.*``), or ``NAME.tif`` beside ``NAME_mask.tif`` in ``PATH`` itself, or either
    of these inside ``PATH/train``, ``PATH/val``, ``PATH/test``.
``ermito:PATH`` (the ER / Mito dataset release)
    TIFF images with 0/255 TIFF masks: ``PATH/{train,val,test}/{images,masks}/`` or
    ``PATH/images`` + ``PATH/masks`` (``labels/`` and ``gt/`` are accepted for the masks)
    with split lists ``PATH/{train,val,test}.txt``; split information is required, and a
    mask with values other than 0, 1 and 255 is an error (it is not this release).
``dsb2018:PATH`` (2018 Data Science Bowl, ``stage1_train``)
    one folder per sample, ``PATH/ID/images/ID.png`` and one PNG per nucleus in
    ``PATH/ID/masks/``, merged into one foreground mask.  RGB(A) PNGs become one channel by
    dropping alpha and averaging R, G and B (fluorescence images are grey stored as RGB, so
    this is exact for them); ``channel=N`` takes one channel instead.

**Splits.**  Split folders or split lists (``train.txt`` etc., one name per line, ``#``
comments) are used where they exist; without a validation folder or list, ``val`` is 10 % of
the training images and ``train`` the rest.  Without any split information, with
``holdout=none`` (the default of ``folder:``) ``test`` is every image and ``train``/``val``
are a 90/10 split of every image; with ``holdout=hash`` (the default of ``dsb2018:``) the
images are split 80/10/10 into disjoint ``train``/``val``/``test``.  Every such split ranks
the names by their sha256 and cuts the ranking (:func:`hash_split`), so it is deterministic
and independent of the file system's order.

**Images and masks.**  TIFF (uint8, uint16, float32...) and PNG.  An image is returned as
float32 normalised to [0, 1] per image with the percentile rule of :func:`fmbench.data.normalize`
(1st and 99.8th percentiles, as CSBDeep and Cellpose do).  Every non-zero mask value is
foreground, so 0/1, 0/255 and instance-label masks all work (float masks: > 0.5).

**Errors.**  Every problem raises :class:`fmbench.DataError` with one line naming the file:
a missing mask, a size mismatch, an unreadable or truncated file, a stack or multi-channel
image without ``plane=``/``channel=``, an empty folder, and masks without any foreground in
the whole dataset.  Nothing is skipped silently.
"""

from __future__ import annotations

from fmbench import hookimpl

from .dataset import FolderDataset, open_dsb2018, open_ermito, open_folder
from .layout import IMAGE_EXTS, MASK_SUFFIXES, OTHER_IMAGE_EXTS, Layout, Pair
from .refs import SPLITS, Options, hash_split, parse_ref

__all__ = ["IMAGE_EXTS", "MASK_SUFFIXES", "OPENERS", "OTHER_IMAGE_EXTS", "SPLITS", "FolderDataset", "Layout",
           "Options", "Pair", "fmbench_resolve_dataset", "hash_split", "open_dsb2018", "open_ermito",
           "open_folder", "parse_ref"]


OPENERS = {"folder": open_folder, "ermito": open_ermito, "dsb2018": open_dsb2018}


@hookimpl
def fmbench_resolve_dataset(ref, split, image_size):
    scheme, sep, rest = ref.partition(":")
    if not sep or scheme not in OPENERS:
        return None
    return OPENERS[scheme](rest, split)
