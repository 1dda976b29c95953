"""``FIQAModule``: trains a face-quality regressor on quality labels (the dataset's, or
FaceQnet / SDD-FIQA pseudo-labels from a recognition checkpoint) and evaluates quality methods
by the error-versus-discard characteristic of a recogniser's comparisons.

Evaluation compares the module's own model with every entry of ``methods`` (other models by
name, trained face-quality checkpoints, or precomputed quality scores from a CSV/JSON file) on
the same comparisons: the recogniser's cosine similarities of the evaluation pairs, or a
precomputed ``similarities`` CSV. It logs ``pauc/<method>`` (pAUC up to ``edc.limit``),
``pauc_rel/<method>`` (minus the theoretical best), ``fnmr@<limit>/<method>`` and the same for
random qualities, SRCC against the quality labels and against degradation levels (all images,
and ``srcc_degraded/<method>`` over the degraded ones alone), and writes
``edc_<stage>.png`` and ``pauc_<stage>.csv``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from scipy import stats

from visionzoo.core.checkpoint import load_checkpoint_module
from visionzoo.core.gathered import GatheredMetric
from visionzoo.core.io import DataError, read_rgb
from visionzoo.core.module import VisionModule
from visionzoo.fiqa.edc import edc, error_at, pair_quality, pauc, random_edc
from visionzoo.fiqa.labels import faceqnet_labels, sddfiqa_labels
from visionzoo.fiqa.models.handcrafted import HandcraftedQuality
from visionzoo.fiqa.plots import plot_edc, write_pauc_table
from visionzoo.fiqa.recognizer import LoadedRecognizer, load_recognizer
from visionzoo.fiqa.scores import read_quality_scores, read_similarity_scores
from visionzoo.registry import create_model, model_info

LABEL_SOURCES = ("auto", "dataset", "faceqnet", "sddfiqa")
SCORE_SUFFIXES = (".csv", ".json")


class QualityStore(GatheredMetric[dict]):
    """Per evaluation image (by dataset index): each method's quality and the embedding."""

    def update(self, indices: torch.Tensor, qualities: dict[str, torch.Tensor], emb: Any) -> None:
        rows = {k: v.detach().float().cpu().numpy() for k, v in qualities.items()}
        emb = None if emb is None else emb.detach().float().cpu().numpy()
        for j, i in enumerate(indices.tolist()):
            self._add(int(i), {"q": {k: v[j] for k, v in rows.items()},
                               "emb": None if emb is None else emb[j]})  # fmt: skip

    def compute(self) -> dict[str, Any]:
        return self.gathered()


class FIQAModule(VisionModule):
    """Face-image quality training and EDC evaluation (see the module docstring).

    ``recognizer``: recognition checkpoint for comparison scores and pseudo-labels;
    ``labels``: ``auto`` (the model's own pseudo-labels when a recogniser is given, else the
    dataset's), ``dataset``, ``faceqnet`` or ``sddfiqa``; ``sddfiqa``: ``{repeats, seed}``;
    ``methods``: extra quality methods; ``similarities``: a ``path1,path2,same,score`` CSV;
    ``edc``: ``{threshold: fmr|starting_error|retune, fmr, starting_error, limit,
    random_repeats}``."""

    def __init__(
        self,
        *,
        loss: Any = None,
        recognizer: str | None = None,
        labels: str = "auto",
        sddfiqa: dict[str, Any] | None = None,
        methods: list[Any] | None = None,
        similarities: str | None = None,
        edc: dict[str, Any] | None = None,
        plots: bool = True,
        **base_kw: Any,
    ) -> None:
        if loss:
            raise ValueError("task=fiqa picks its loss from the model; drop loss=...")
        if labels not in LABEL_SOURCES:
            raise ValueError(f"task.labels={labels!r}; choose one of {', '.join(LABEL_SOURCES)}")
        super().__init__(**base_kw)
        self.model_name = self.hparams.model["name"]
        self.edc_options = {"threshold": "fmr", "fmr": 1e-3, "starting_error": 0.05,
                            "limit": 0.2, "random_repeats": 20, **dict(edc or {})}  # fmt: skip
        self.store = QualityStore()
        self._recognizer: LoadedRecognizer | None = None
        self._methods: list[tuple[str, Any]] | None = None  # not sub-modules: not checkpointed

    # ------------------------------------------------------------------------- helpers
    def recognizer(self) -> LoadedRecognizer | None:
        """The recognition checkpoint of ``task.recognizer`` (loaded once), or ``None``."""
        if self._recognizer is None and self.hparams.recognizer:
            self._recognizer = load_recognizer(self.hparams.recognizer)
        return self._recognizer

    def quality_methods(self) -> list[tuple[str, Any]]:
        """``(name, callable or {path_key: quality})``: the own model first, then ``methods``."""
        if self._methods is None:
            found: list[tuple[str, Any]] = [(self.model_name, self.model)]
            for entry in self.hparams.methods or []:
                found.append(self._build_method(entry))
            names = [n for n, _ in found]
            if len(set(names)) != len(names):
                raise ValueError(f"task.methods: duplicate method names {names}; name them")
            self._methods = found
        return self._methods

    def _build_method(self, entry: Any) -> tuple[str, Any]:
        spec = {"source": entry} if isinstance(entry, str) else dict(entry)
        source = str(spec.pop("source", spec.get("name", "")))
        name = spec.pop("name", None) or Path(source).stem
        if source.endswith(".ckpt"):
            module = load_checkpoint_module(source)
            if module.hparams.task_name != "fiqa":
                raise ValueError(f"task.methods: {source!r} is not a task=fiqa checkpoint")
            return name, module.model.eval()
        if source.lower().endswith(SCORE_SUFFIXES):
            root = self.trainer.datamodule.root
            return name, read_quality_scores(source, root)
        info = model_info(source)
        if "fiqa" not in info.tasks:
            raise ValueError(f"task.methods: {source!r} is not a fiqa model")
        if "recognizer" in inspect.signature(info.factory).parameters or (
            source in ("serfiq", "magface_quality")
        ):
            spec.setdefault("recognizer", self.hparams.recognizer)
        return name, create_model(source, **spec).to(self.device).eval()

    # ------------------------------------------------------------------------------ fit
    def setup(self, stage: str) -> None:
        if stage == "fit" and not model_info(self.model_name).trainable:
            raise ValueError(
                f"model {self.model_name!r} has no learnt weights: score it with "
                f"`eval.py task=fiqa model={self.model_name}` instead of train.py"
            )
        super().setup(stage)

    def label_source(self) -> str:
        """The quality labels training uses (``task.labels`` with ``auto`` resolved)."""
        source = self.hparams.labels
        if source == "auto":
            own = getattr(self.model, "default_labels", "dataset")
            source = own if self.hparams.recognizer else "dataset"
        return source

    def on_fit_start(self) -> None:
        """Pseudo-labels for the training and evaluation images, before their loaders exist."""
        source = self.label_source()
        datamodule = self.trainer.datamodule
        for split in ("train", "val"):
            dataset = datamodule.datasets.get(split)
            if dataset is None:
                continue
            if source != "dataset":
                dataset.targets = self.pseudo_labels(dataset, source, datamodule)
            if split == "train" and not np.isfinite(dataset.targets).any():
                raise DataError(
                    "no quality labels for training: give data.labels=<csv path,quality> or "
                    "task.recognizer=<recognition .ckpt> for FaceQnet / SDD-FIQA pseudo-labels"
                )
            if split == "train" and hasattr(self.model, "set_target_stats"):
                self.model.set_target_stats(dataset.targets)  # the same values on resume
        rank_zero_info(f"fiqa: training on {source} quality labels")

    @torch.no_grad()
    def pseudo_labels(self, dataset: Any, source: str, datamodule: Any) -> np.ndarray:
        """FaceQnet or SDD-FIQA labels (N,) of ``dataset`` from the recogniser's embeddings."""
        rec = self.recognizer()
        if rec is None:
            raise ValueError(f"task.labels={source} needs task.recognizer=<recognition .ckpt>")
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=datamodule.eval_batch_size, collate_fn=dataset.collate
        )
        compliance = HandcraftedQuality()
        emb, comp = [], []
        for batch in loader:
            images = batch["image"].to(self.device)
            emb.append(rec.embed(images).cpu().numpy())
            comp.append(compliance(images, batch["landmarks"].to(self.device)).cpu().numpy())
        e, ids = np.concatenate(emb), np.asarray(dataset.identities)
        if source == "faceqnet":
            return faceqnet_labels(e, ids, np.concatenate(comp))
        options = dict(self.hparams.sddfiqa or {})
        return sddfiqa_labels(e, ids, **options)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        quality = self.model(batch["image"], batch["landmarks"])
        target = batch["target"]
        valid = torch.isfinite(target)
        pred, goal = quality[valid] / 100.0, target[valid] / 100.0
        if self.model.loss_name == "smooth_l1":
            loss = F.smooth_l1_loss(pred, goal)
        else:
            loss = F.mse_loss(pred, goal)
        self.log("train/loss", loss, prog_bar=True, batch_size=int(valid.sum().clamp_min(1)))
        return loss

    # ----------------------------------------------------------------------------- eval
    def _eval_step(self, batch: dict[str, Any]) -> None:
        images, marks = batch["image"], batch["landmarks"]
        qualities = {
            name: method(images, marks)
            for name, method in self.quality_methods()
            if callable(method)
        }
        rec = None if self.hparams.similarities else self.recognizer()
        emb = rec.embed(images) if rec is not None else None
        self.store.update(batch["index"], qualities, emb)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def _qualities(self, samples: dict, dataset: Any) -> dict[str, np.ndarray]:
        n = len(dataset)
        out: dict[str, np.ndarray] = {}
        for name, method in self.quality_methods():
            q = np.full(n, np.nan)
            if callable(method):
                for i, s in samples.items():
                    q[i] = s["q"][name]
            else:
                q = np.array([method.get(k, np.nan) for k in dataset.keys])
            out[name] = q
        return out

    def _comparisons(
        self, samples: dict, dataset: Any, datamodule: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(first, second, mated, similarity) of the evaluation comparisons, or None."""
        if self.hparams.similarities:
            rows = read_similarity_scores(self.hparams.similarities, datamodule.root)
            where = {k: i for i, k in enumerate(dataset.keys)}
            missing = [k for r in rows for k in r[:2] if k not in where]
            if missing:
                raise DataError(
                    f"task.similarities: image {missing[0]!r} (and {len(missing) - 1} more) is "
                    "not in the evaluation set; point data.root / data.val_sets at its images"
                )
            first = np.array([where[r[0]] for r in rows])
            second = np.array([where[r[1]] for r in rows])
            mated = np.array([r[2] for r in rows], bool)
            return first, second, mated, np.array([r[3] for r in rows], np.float64)
        if self.recognizer() is None:
            return None
        vset = datamodule.sets[0]
        table = np.stack([samples[i]["emb"] for i in range(len(dataset))])
        sim = (table[vset.first] * table[vset.second]).sum(1).astype(np.float64)
        return vset.first, vset.second, vset.same, sim

    def _epoch_end(self, stage: str) -> None:
        samples = self.store.compute()
        self.store.reset()
        datamodule = self.trainer.datamodule
        dataset = datamodule.datasets[stage]
        qualities = self._qualities(samples, dataset)
        scalars: dict[str, float] = {}
        own, target = qualities[self.model_name], np.asarray(dataset.targets)
        known = np.isfinite(target) & np.isfinite(own)
        if known.sum() >= 2 and np.ptp(target[known]) > 0 and np.ptp(own[known]) > 0:
            scalars["srcc"] = float(stats.spearmanr(own[known], target[known]).statistic)
            scalars["plcc"] = float(stats.pearsonr(own[known], target[known]).statistic)
        levels = np.asarray(dataset.levels)
        for name, q in qualities.items():
            ok = np.isfinite(levels) & np.isfinite(q)
            if ok.sum() >= 2 and np.ptp(levels[ok]) > 0 and np.ptp(q[ok]) > 0:
                scalars[f"srcc_level/{name}"] = float(stats.spearmanr(q[ok], levels[ok]).statistic)
            bad = ok & (levels > 0)  # the degraded images alone: the order among the levels
            if bad.sum() >= 2 and np.ptp(levels[bad]) > 0 and np.ptp(q[bad]) > 0:
                rho = stats.spearmanr(q[bad], levels[bad]).statistic
                scalars[f"srcc_degraded/{name}"] = float(rho)
        comparisons = self._comparisons(samples, dataset, datamodule)
        if comparisons is not None:
            scalars.update(self._edc_report(stage, qualities, *comparisons))
        self.log_metrics(stage, scalars)

    def _edc_report(
        self,
        stage: str,
        qualities: dict[str, np.ndarray],
        first: np.ndarray,
        second: np.ndarray,
        mated: np.ndarray,
        sim: np.ndarray,
    ) -> dict[str, float]:
        o = self.edc_options
        kw = {"mode": o["threshold"], "fmr": o["fmr"], "starting_error": o["starting_error"]}
        limit = float(o["limit"])
        curves = {}
        for name, q in qualities.items():
            pq = pair_quality(q[first], q[second])
            if not np.isfinite(pq).all():
                raise DataError(
                    f"quality method {name!r} has no score for {int((~np.isfinite(pq)).sum())} "
                    "comparisons' images; its scores file must cover the evaluation set"
                )
            curves[name] = edc(sim, mated, pq, **kw)
        curves["random"] = random_edc(sim, mated, repeats=int(o["random_repeats"]), **kw)
        out: dict[str, float] = {"fnmr": curves["random"].starting_error}
        rows = []
        for name, curve in curves.items():
            row = {
                "method": name,
                "pauc": pauc(curve, limit),
                "pauc_rel": pauc(curve, limit, relative=True),
                f"fnmr@{limit:g}": error_at(curve, limit),
            }
            rows.append(row)
            for key in ("pauc", "pauc_rel", f"fnmr@{limit:g}"):
                out[f"{key}/{name}"] = float(row[key])
        if self.trainer.is_global_zero and not self.trainer.sanity_checking and self.hparams.plots:
            folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
            mode = o["threshold"]
            at = f"FMR={o['fmr']:g}" if mode != "starting_error" else f"e0={o['starting_error']}"
            title = f"EDC ({mode}, {at}); FNMR before discarding {out['fnmr']:.3f}"
            plot_edc(folder / f"edc_{stage}.png", curves, limit=limit, title=title)
            table = write_pauc_table(folder / f"pauc_{stage}.csv", rows)
            print(f"\nEDC pAUC up to {limit:.0%} discarded ({title}):\n{table}\n"
                  f"plot: {folder / f'edc_{stage}.png'}")  # fmt: skip
        return out

    # -------------------------------------------------------------------------- predict
    @torch.no_grad()
    def predict_files(self, files: list[Path], out_dir: Path, datamodule: Any) -> list[dict]:
        """Quality of each file by the module's model; also written as ``qualities.csv``
        (``path,quality``: readable back as a precomputed scores file)."""
        net = self.model.eval()
        records = []
        for f in files:
            image = datamodule.eval_tf(image=read_rgb(f))["image"][None].to(self.device)
            records.append({"file": str(f), "quality": float(net(image, None)[0])})
        lines = ["path,quality"] + [f"{r['file']},{r['quality']:.6f}" for r in records]
        (out_dir / "qualities.csv").write_text("\n".join(lines) + "\n")
        return records
