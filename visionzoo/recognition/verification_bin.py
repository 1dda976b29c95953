"""insightface's face-verification ``.bin`` files (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``).

A file is a pickle of ``(bins, issame_list)``: ``bins`` holds ``2 * P`` encoded images (JPEG
bytes; images ``2i`` and ``2i + 1`` form pair ``i``) and ``issame_list`` ``P`` booleans, a list
or a numpy bool array. Files written by Python 2 hold ``str`` images, which load as ``bytes``
with ``encoding="bytes"`` (insightface's ``load_bin`` does the same).

A pickle can run any importable callable while loading, so these files are read with an
unpickler that resolves only the globals a numpy bool array needs, each wrapped to refuse
anything other than a bool array; every other global is refused before it is called.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visionzoo.core.io import DataError


def _is_bool_dtype(dtype: Any) -> bool:
    try:
        return np.dtype(dtype) == np.bool_
    except TypeError:
        return False


def _numpy_attr(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; old files name the former, new ones the latter,
    # and either must load under either numpy.
    new, old = (
        module.replace("numpy.core", "numpy._core"),
        module.replace("numpy._core", "numpy.core"),
    )
    for candidate in (new, old):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise DataError(f"numpy has no {module}.{name}")


def _reconstruct(module: str) -> Callable[..., Any]:
    real = _numpy_attr(module, "_reconstruct")

    def reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
        if subtype is not np.ndarray:
            raise pickle.UnpicklingError(f"refused array subtype {subtype!r}")
        return real(subtype, shape, dtype_code)  # an empty array; BUILD fills it

    return reconstruct


def _frombuffer(module: str) -> Callable[..., Any]:
    real = _numpy_attr(module, "_frombuffer")

    def frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        if not _is_bool_dtype(dtype):
            raise pickle.UnpicklingError(f"refused array of dtype {dtype!r}; only bool arrays")
        return real(buf, dtype, shape, order)

    return frombuffer


def _scalar(module: str) -> Callable[..., Any]:
    real = _numpy_attr(module, "scalar")

    def scalar(dtype: Any, *args: Any) -> Any:
        if not _is_bool_dtype(dtype):
            raise pickle.UnpicklingError(f"refused scalar of dtype {dtype!r}; only bool")
        return real(dtype, *args)

    return scalar


def _dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if isinstance(obj, bytes):  # Python 2 files give the type code as bytes
        obj = obj.decode("ascii")
    if not _is_bool_dtype(obj):
        raise pickle.UnpicklingError(f"refused dtype {obj!r}; only bool arrays")
    return np.dtype(obj, align, copy)


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Python 3 pickles bytes as _codecs.encode(latin-1 str) below protocol 3.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refused _codecs.encode other than str -> latin1 bytes")
    return text.encode("latin1")


# (module, name) -> factory of the callable the unpickler may use; nothing else resolves.
_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: _dtype,
    ("_codecs", "encode"): lambda: _codecs_encode,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = lambda m=_module: _reconstruct(m)
    _ALLOWED[(_module, "scalar")] = lambda m=_module: _scalar(m)
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_module, "_frombuffer")] = lambda m=_module: _frombuffer(m)


class _RefusedGlobal(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _BinUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return factory()


def read_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """Read a verification ``.bin``: the ``2 * P`` encoded images and the ``(P,)`` bool
    ``issame`` array (pair ``i`` = images ``2i``, ``2i + 1``). Any global other than those a
    numpy bool array needs is refused without being called."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"verification file {str(path)!r} does not exist; check the path")
    try:
        with open(path, "rb") as f:
            data = _BinUnpickler(f, encoding="bytes").load()
    except _RefusedGlobal as err:
        raise DataError(
            f"{path}: refused to load global {err.name!r}; a verification .bin holds only image "
            "bytes and booleans — this file is not one (or was tampered with), do not trust it"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DataError(
            f"{path}: not a readable verification .bin ({err}); expected a pickle of "
            "(list of image bytes, list of bools) as insightface writes them"
        ) from None
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise DataError(f"{path}: expected a pickled (bins, issame_list) pair")
    bins, issame = data
    if not isinstance(bins, list | tuple) or not all(isinstance(b, bytes) for b in bins):
        raise DataError(f"{path}: the first item must be a list of encoded image bytes")
    issame = np.asarray(issame)
    if issame.ndim != 1 or not (issame.dtype == np.bool_ or issame.size == 0):
        raise DataError(f"{path}: the second item must be a flat list of booleans")
    if len(bins) != 2 * len(issame):
        raise DataError(
            f"{path}: {len(bins)} images for {len(issame)} pairs; a .bin holds 2 images per pair"
        )
    return list(bins), issame.astype(bool)


def write_bin(path: str | Path, images: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write ``images`` (``2 * P`` encoded images, consecutive pairs) and ``issame`` (``P``
    booleans) as insightface does: a pickle of ``(list of bytes, list of bool)``."""
    images = [bytes(b) for b in images]
    same = [bool(s) for s in issame]
    if len(images) != 2 * len(same):
        raise ValueError(f"{len(images)} images for {len(same)} pairs; give 2 images per pair")
    with open(path, "wb") as f:
        pickle.dump((images, same), f, protocol=pickle.HIGHEST_PROTOCOL)
