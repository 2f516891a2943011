"""The evaluate step: offline quality metrics for generated drums, each beside a real-against-real baseline.

Metrics (all on 16 kHz clips prepared exactly as the features step prepares them):
- ``frechet_distance``: Frechet distance between Gaussians fitted to per-clip audio descriptors
  (log-mel band means and standard deviations over time, spectral centroid mean and std,
  zero-crossing rate, RMS peak time and 20 dB decay time), generated against held-out real clips.
- ``ndb_k``: NDB/K (Richardson and Weiss, 2018): k-means on training log-mel spectrograms, then the
  share of bins whose generated proportion differs from the training proportion (two-proportion z-test).
- ``nn_self`` / ``nn_train``: mean nearest-neighbour RMS distance (log-mel) from each generated clip to the
  other generated clips (small: mode collapse; measured in groups the size of the held-out set, so that
  it compares with the real baseline) and to the training clips (small: memorization).
- ``attack_time_w1`` / ``decay_time_w1``: Wasserstein-1 distance (seconds) between the generated and held-out
  clips' attack times (to within 3 dB of the loudest frame) and 20 dB decay times: the hit's timing, which the
  Frechet distance barely weighs.
- ``inception_score`` and ``class_share`` when the data is labelled: a small drum-class classifier
  trained on real training clips scores the generated ones. The generated clips come through the render's
  Griffin-Lim, so the classifier learns each training clip twice, as recorded and through that same trip
  (a judge that knew only clean clips heard every real clap through the render as a snare: a perfect generator
  would have had no claps); ``classifier_accuracy_real`` and ``classifier_accuracy_inverted`` are its accuracy
  on the held-out clips, clean and through the render, and ``inception_score_inverted`` the score those get.
  ``class_expected``: the share of each class a faithful generator makes (the classes a conditional model was
  asked for, else the training clips' mix), against which the gate judges ``class_share``.
Each has a ``*_real`` twin, the score real clips get. For ``frechet_distance_real`` that is as many real training
clips as there are generated ones against the same held-out clips: a Frechet distance between small samples
is biased upwards, the more the smaller they are (on the demo's kit, half the held-out clips against the
other half, the earlier baseline, scored 20 times what 256 training clips against all of them score:
BENCHMARKS.md), so the twin is measured at the generated side's sample size. The other twins score the
held-out clips themselves (``nn_self_real``: each one's nearest other held-out clip).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

from specgan.core.atomic import write_json
from specgan.core.config import EvaluateConfig, FeaturesConfig, RenderConfig
from specgan.core.errors import SpecganError
from specgan.core.hashing import file_sha256
from specgan.data.audio_files import list_audio, read_labels, unusable_reason
from specgan.data.spectral import RejectedClip, load_clip
from specgan.evaluation.metric_values import numeric_metrics

log = logging.getLogger(__name__)


class EvaluateError(SpecganError):
    """The data cannot support the evaluation."""


@dataclass(frozen=True)
class RealSet:
    audio: np.ndarray  # [N, clip_samples]
    labels: list[str]


def load_real(data_dir: str | Path, split: str, cfg: FeaturesConfig, min_clips: int = 4,
              labels_mode: str = "manifest") -> RealSet:
    """Decode a split's clips exactly as the features step does (rejected clips and exact duplicates are
    skipped); fewer than ``min_clips`` distinct usable clips is an EvaluateError."""
    data_dir = Path(data_dir)
    labels = read_labels(data_dir, labels_mode)
    clips, names, seen, dupes = [], [], set(), 0
    for rel in list_audio(data_dir, split):
        if unusable_reason(data_dir / rel, rel):
            continue
        try:
            clip, _ = load_clip(data_dir / rel, cfg)
        except RejectedClip:
            continue
        key = hashlib.sha256(np.ascontiguousarray(clip, dtype=np.float32).tobytes()).hexdigest()
        if key in seen:
            dupes += 1
            continue
        seen.add(key)
        clips.append(clip)
        names.append(labels.get(rel, ""))
    if len(clips) < min_clips:
        raise EvaluateError(f"split {split!r} under {data_dir} has {len(clips)} distinct usable clips "
                            f"({dupes} duplicates skipped); the evaluation needs at least {min_clips} "
                            "(evaluate.min_heldout): is --data the dataset the model was trained on?")
    if dupes:
        log.warning("split %r under %s: %d duplicate clips skipped", split, data_dir, dupes)
    return RealSet(np.stack(clips), names)


class Descriptors:
    """Per-clip descriptor vectors and log-mel spectrograms."""

    def __init__(self, cfg: EvaluateConfig, sample_rate: int) -> None:
        self.sr = sample_rate
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=cfg.mel_n_fft, hop_length=cfg.mel_hop,
                                                        n_mels=cfg.n_mels, power=2.0)
        self.hop, self.n_fft = cfg.mel_hop, cfg.mel_n_fft

    def logmel(self, audio: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return torch.log(self.mel(torch.as_tensor(audio, dtype=torch.float32)) + 1e-6)

    def envelope_times(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[N, samples] -> in seconds: the loudest frame's time, the time from it to 20 dB under it, and the
        attack (the first frame within ``ATTACK_DB`` of the loudest: a ripple of a dB in a slow decay does not
        move it, a hit that starts quiet does)."""
        with torch.inference_mode():
            rms = x.unfold(-1, self.n_fft, self.hop).square().mean(-1).sqrt()
            peak_idx = rms.argmax(-1)
            db = 20 * torch.log10(rms / rms.amax(-1, keepdim=True).clamp_min(1e-12) + 1e-12)
            frames = torch.arange(rms.shape[-1])
            after = frames >= peak_idx[:, None]
            decay = torch.where(after & (db < -20), frames.float(), float(rms.shape[-1]))
            attack = (db >= -ATTACK_DB).float().argmax(-1)  # the first such frame
            sec = self.hop / self.sr
            return peak_idx.float() * sec, (decay.amin(-1) - peak_idx) * sec, attack.float() * sec

    def vectors(self, audio: np.ndarray) -> np.ndarray:
        """[N, samples] -> [N, 2 * n_mels + 5] descriptors."""
        x = torch.as_tensor(audio, dtype=torch.float32)
        lm = self.logmel(audio)
        peak_time, decay_time, _ = self.envelope_times(x)
        with torch.inference_mode():
            window = torch.hann_window(self.n_fft)
            centroid = torchaudio.functional.spectral_centroid(x, self.sr, 0, window, self.n_fft, self.hop, self.n_fft)
            centroid = torch.nan_to_num(centroid) / (self.sr / 2)
            zcr = (torch.sign(x[:, 1:]) != torch.sign(x[:, :-1])).float().mean(-1)
        parts = [lm.mean(-1), lm.std(-1), centroid.mean(-1, keepdim=True), centroid.std(-1, keepdim=True),
                 zcr[:, None], peak_time[:, None], decay_time[:, None].float()]
        return torch.cat(parts, dim=1).double().numpy()


ATTACK_DB = 3.0  # the attack ends at the first frame within this many dB of the clip's loudest


def envelope_gaps(desc: Descriptors, generated: np.ndarray, reference: np.ndarray, heldout: np.ndarray) -> dict:
    """Wasserstein-1 distances (seconds) between the generated and held-out clips' attack times and 20 dB decay
    times, each beside the size-matched real clips' (``*_real``). The Frechet distance weighs each descriptor
    in its own units, so the hit's timing (hundredths of a second, against nats for the log-mel bands) hardly
    moves it: a model whose hits start late or all decay alike scores nearly as well there."""
    from scipy.stats import wasserstein_distance

    times = [desc.envelope_times(torch.as_tensor(a, dtype=torch.float32)) for a in (generated, reference, heldout)]
    out = {}
    for name, i in (("attack_time_w1", 2), ("decay_time_w1", 1)):
        gen, ref, held = (t[i].double().numpy() for t in times)
        out[name] = float(wasserstein_distance(gen, held))
        out[name + "_real"] = float(wasserstein_distance(ref, held))
    return out


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) of Gaussians fitted to the rows."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    offset = np.eye(s_a.shape[0]) * eps
    covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def bootstrap_se(a: np.ndarray, b: np.ndarray, n: int, seed: int) -> float:
    """Standard error of the Frechet distance between row sets ``a`` and ``b`` by bootstrap resampling."""
    if n < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    vals = [frechet_distance(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
            for _ in range(n)]
    return float(np.std(vals, ddof=1))


def draws_sd(pool: np.ndarray, k: int, b: np.ndarray, n: int, seed: int) -> float:
    """Standard deviation of the Frechet distance between ``k`` rows drawn from ``pool`` without replacement and
    ``b``, over ``n`` draws: the size-matched baseline's own spread. The bootstrap repeats rows, which biases a
    Frechet distance upwards and overstates its spread (BENCHMARKS.md: 29 against 5 on the demo)."""
    if n < 2 or len(pool) <= k:
        return float("nan")
    rng = np.random.default_rng(seed)
    return float(np.std([frechet_distance(pool[rng.permutation(len(pool))[:k]], b) for _ in range(n)], ddof=1))


def nn_distance(queries: np.ndarray, refs: np.ndarray, exclude_self: bool = False) -> float:
    """Mean RMS distance from each query to its nearest reference (itself excluded when ``exclude_self``)."""
    q, r = torch.as_tensor(queries, dtype=torch.float64), torch.as_tensor(refs, dtype=torch.float64)
    d = torch.cdist(q, r) / np.sqrt(q.shape[1])
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.mean())


def nn_self_matched(x: np.ndarray, n: int, seed: int) -> float:
    """|D|self at sample size ``n``: nearest-neighbour distances shrink as a set grows, so the generated
    set is split (seeded) into groups of the real set's size and the group values are averaged."""
    order = np.random.default_rng(seed).permutation(x.shape[0])
    groups = [order[i:i + n] for i in range(0, x.shape[0] - n + 1, n)] or [order]
    return float(np.mean([nn_distance(x[g], x[g], exclude_self=True) for g in groups]))


def nn_self_by_class(gen_mel: np.ndarray, requested: list[str], train_mel: np.ndarray, train_labels: list[str],
                     seed: int) -> dict[str, float]:
    """A conditional model's spread within each class: the nearest-neighbour distance among a class's generated
    clips over the same among its training clips, both in groups of k (``nn_self_matched``), k the smaller
    count (at least 2: the kit's 48 training clips a class against 36 generated). 1: as varied as the data;
    near 0: one sound for the class (which the whole-set collapse test misses while the other classes vary)."""
    want, have = np.asarray(requested).astype(str), np.asarray(train_labels).astype(str)
    out = {}
    for c in sorted(set(want) & set(have)):
        real, fake = train_mel[have == c], gen_mel[want == c]
        k = min(len(real), len(fake))
        if k < 2:
            continue
        base = nn_self_matched(real, k, seed)
        if base > 0:
            out[str(c)] = nn_self_matched(fake, k, seed) / base
    return out


def ndb_k(train: np.ndarray, samples: np.ndarray, bins: int, alpha: float, seed: int) -> float:
    """Share of k-means bins (fitted on ``train``) where the samples' proportion differs significantly."""
    from scipy.stats import norm
    from sklearn.cluster import KMeans

    k = min(bins, train.shape[0] // 2)
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(train)
    p_train = np.bincount(km.labels_, minlength=k) / train.shape[0]
    p_samp = np.bincount(km.predict(samples), minlength=k) / samples.shape[0]
    n1, n2 = train.shape[0], samples.shape[0]
    pooled = (p_train * n1 + p_samp * n2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = np.divide(p_train - p_samp, se, out=np.zeros(k), where=se > 0)
    return float((np.abs(z) > norm.ppf(1 - alpha / 2)).sum() / k)


def drum_classifier(train_vec: np.ndarray, train_labels: list[str], inverted_vec: np.ndarray | None = None,
                    inverted_labels: list[str] | None = None):
    """The evaluation's drum-class classifier, fitted on labelled real clips' descriptor vectors, and on the same
    clips through the render's round trip when given (the judge of generated clips must know how a real clap
    sounds after Griffin-Lim). Its classes weigh alike (``class_weight="balanced"``): it asks which class a clip
    sounds like, not how common that class is in the training set (with the set's prior, one training clap
    among 70 made every clap a snare, a perfect generator's included)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = train_vec, list(train_labels)
    if inverted_vec is not None:
        x, y = np.concatenate([train_vec, inverted_vec]), y + list(inverted_labels or ())
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")).fit(x, y)


def accuracy(clf, vec: np.ndarray, labels: list[str]) -> float:
    """The classifier's share of right answers on labelled clips."""
    return float((np.asarray(clf.predict(vec)).astype(str) == np.asarray(labels).astype(str)).mean())


def fit_length(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Clips cut or zero-padded to the real clips' length (float32)."""
    out = np.zeros((audio.shape[0], n_samples), dtype=np.float32)
    kept = audio[:, :n_samples]
    out[:, : kept.shape[1]] = kept
    return out


def class_scores(clf, samples: np.ndarray) -> dict:
    """Inception-style score and class shares from a classifier trained on labelled real clips."""
    probs = clf.predict_proba(samples)
    marginal = probs.mean(0, keepdims=True)
    kl = (probs * (np.log(probs + 1e-12) - np.log(marginal + 1e-12))).sum(1)
    shares = np.bincount(probs.argmax(1), minlength=len(clf.classes_)) / len(probs)
    return {"inception_score": float(np.exp(kl.mean())),
            "class_share": {str(c): float(s) for c, s in zip(clf.classes_, shares, strict=True)}}


def predict_classes(audio: np.ndarray, data_dir: str | Path, train_split: str, feat: FeaturesConfig,
                    cfg: EvaluateConfig, labels_mode: str = "manifest",
                    round_trip: Callable[[np.ndarray], np.ndarray] | None = None) -> list[str] | None:
    """Each clip's most likely drum class by the evaluation's classifier (fitted as the evaluate step fits it:
    ``round_trip`` adds the training clips through the render); None when the data is unlabelled."""
    train = load_real(data_dir, train_split, feat, labels_mode=labels_mode)
    if not all(train.labels) or len(set(train.labels)) < 2:
        return None
    desc = Descriptors(cfg, feat.sample_rate)
    clf = fit_judge(desc, train, audio.shape[0], cfg.seed, round_trip)
    return [str(c) for c in clf.predict(desc.vectors(fit_length(audio, feat.clip_samples)))]


def fit_judge(desc: Descriptors, train: RealSet, n_generated: int, seed: int,
              round_trip: Callable[[np.ndarray], np.ndarray] | None = None):
    """The classifier that judges ``n_generated`` generated clips, fitted as the evaluate step fits it: every
    training clip, and (with the render's ``round_trip``) the Frechet baseline's training clips through it."""
    pick = reference_rows(len(train.labels), n_generated, seed)
    inverted = None
    if round_trip is not None:
        inverted = desc.vectors(fit_length(round_trip(train.audio[pick]), train.audio.shape[1]))
    return drum_classifier(desc.vectors(train.audio), train.labels, inverted, [train.labels[i] for i in pick])


def reference_rows(n_train: int, n_generated: int, seed: int) -> np.ndarray:
    """The training clips of the Frechet baseline: as many as are generated (all when there are fewer)."""
    return np.sort(np.random.default_rng(seed).permutation(n_train)[:n_generated])


def evaluate_audio(generated: np.ndarray, heldout: RealSet, train: RealSet, cfg: EvaluateConfig,
                   sample_rate: int, requested: list[str] | None = None,
                   round_trip: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """All metrics of ``generated`` clips, with the real-against-real baselines and flags. ``requested``: the
    class each clip was asked for (a conditional model), scored by the classifier against its accuracy on the
    held-out real clips. ``round_trip``: real clips to what a perfect generator would make of them (the
    render's inversion); with it ``frechet_distance_inverted`` is the baseline's clips after that trip,
    the best the model's spectrograms can score through Griffin-Lim, and the memorization test compares in that
    domain too: a generator that learned its training clips by heart makes them through the render, and its
    sounds sit at distance 0 from the training clips through the same trip (from the clean ones they would sit
    about as far as a held-out clip does, and the flag would never rise)."""
    desc = Descriptors(cfg, sample_rate)
    gen_vec, held_vec, train_vec = (desc.vectors(a) for a in (generated, heldout.audio, train.audio))
    flat = lambda a: desc.logmel(a).flatten(1).double().numpy()  # noqa: E731
    gen_mel, held_mel, train_mel = flat(generated), flat(heldout.audio), flat(train.audio)
    # The baseline's real side has the generated side's size (all training clips when there are fewer).
    pick = reference_rows(train_vec.shape[0], gen_vec.shape[0], cfg.seed)
    ref_vec = train_vec[pick]
    train_inv = held_inv = inv_vec = None
    if round_trip is not None:  # the real clips as a perfect generator would make them
        train_inv, held_inv = round_trip(train.audio), round_trip(heldout.audio)
        inv_vec = desc.vectors(train_inv[pick])
    memo_train = train_mel if train_inv is None else flat(train_inv)
    memo_held = held_mel if held_inv is None else flat(held_inv)
    m = {
        "frechet_distance": frechet_distance(gen_vec, held_vec),
        "frechet_distance_real": frechet_distance(ref_vec, held_vec),
        "ndb_k": ndb_k(train_mel, gen_mel, cfg.ndb_bins, cfg.ndb_alpha, cfg.seed),
        "ndb_k_real": ndb_k(train_mel, held_mel, cfg.ndb_bins, cfg.ndb_alpha, cfg.seed),
        "nn_self": nn_self_matched(gen_mel, held_mel.shape[0], cfg.seed),
        "nn_self_real": nn_distance(held_mel, held_mel, exclude_self=True),
        "nn_train": nn_distance(gen_mel, memo_train),
        "nn_train_real": nn_distance(memo_held, memo_train),
        "n_generated": int(generated.shape[0]), "n_heldout": int(heldout.audio.shape[0]),
        "n_train": int(train.audio.shape[0]),
        **envelope_gaps(desc, generated, train.audio[pick], heldout.audio),
    }
    if not m["frechet_distance_real"] > 0:
        raise EvaluateError(f"the real-vs-real Frechet baseline is {m['frechet_distance_real']:.3g}: the training "
                            "and held-out clips are identical or too few to compare")
    if inv_vec is not None:
        m["frechet_distance_inverted"] = frechet_distance(inv_vec, held_vec)
    if cfg.bootstrap:
        m["frechet_distance_se"] = bootstrap_se(gen_vec, held_vec, cfg.bootstrap, cfg.seed)
        m["frechet_distance_real_se"] = bootstrap_se(ref_vec, held_vec, cfg.bootstrap, cfg.seed + 1)
        if train_vec.shape[0] > gen_vec.shape[0]:  # else every draw is the whole training set
            m["frechet_distance_real_sd"] = draws_sd(train_vec, gen_vec.shape[0], held_vec, cfg.bootstrap,
                                                     cfg.seed + 2)
    m["collapse_flag"] = int(m["nn_self"] < cfg.collapse_ratio * m["nn_self_real"])
    m["memorization_flag"] = int(m["nn_train"] < cfg.memorization_ratio * m["nn_train_real"])
    if all(train.labels) and len(set(train.labels)) > 1:
        # fitted once, on both domains: every class score below uses it
        clf = drum_classifier(train_vec, train.labels, inv_vec, [train.labels[i] for i in pick])
        gen_scores = class_scores(clf, gen_vec)
        m["inception_score"] = gen_scores["inception_score"]
        m["inception_score_real"] = class_scores(clf, held_vec)["inception_score"]
        m["class_share"] = gen_scores["class_share"]
        m["class_expected"] = shares_of(requested if requested is not None else train.labels, clf.classes_)
        if all(heldout.labels):
            m["classifier_accuracy_real"] = accuracy(clf, held_vec, heldout.labels)
        if held_inv is not None:
            held_inv_vec = desc.vectors(held_inv)
            m["inception_score_inverted"] = class_scores(clf, held_inv_vec)["inception_score"]
            if all(heldout.labels):
                m["classifier_accuracy_inverted"] = accuracy(clf, held_inv_vec, heldout.labels)
        if requested is not None:
            m.update(conditional_accuracy(clf, gen_vec, requested))
            by_class = nn_self_by_class(gen_mel, requested, train_mel, train.labels, cfg.seed)
            if by_class:
                m["nn_self_by_class"] = by_class
                m["nn_self_class_min"] = min(by_class.values())
    return m


def conditional_accuracy(clf, gen_vec: np.ndarray, requested: list[str]) -> dict:
    """How often the classifier hears the class a conditional model was asked for (overall and per class),
    beside chance (one over the number of classes)."""
    pred = np.asarray(clf.predict(gen_vec)).astype(str)
    want = np.asarray(requested).astype(str)
    by_class = {c: float((pred[want == c] == c).mean()) for c in sorted(set(requested))}
    return {"conditional_accuracy": float((pred == want).mean()), "conditional_accuracy_by_class": by_class,
            "conditional_chance": 1.0 / len(clf.classes_)}


def class_mix(labels: list[str], classes: tuple[str, ...], n: int) -> list[str]:
    """``n`` class names in the proportions of ``labels`` (largest remainders; every class at least once),
    spread evenly through the list; where every class is as common, every class in turn."""
    counts = np.array([labels.count(c) for c in classes], dtype=np.float64)
    if not counts.any() or (counts == counts[0]).all():
        return [classes[i % len(classes)] for i in range(n)]
    quota = np.maximum(counts / counts.sum() * n, 1.0)
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: max(0, n - take.sum())]:
        take[i] += 1
    while take.sum() > n:  # the at-least-once floor can overshoot: trim the most asked
        take[np.argmax(take)] -= 1
    slots = sorted(((j + 0.5) / t, i) for i, t in enumerate(take) for j in range(t))
    return [classes[i] for _, i in slots]


def shares_of(labels: list[str], classes) -> dict[str, float]:
    """Each class's share of ``labels`` (0 for a class not among them)."""
    counts = Counter(labels)
    return {str(c): counts[str(c)] / len(labels) for c in classes}


def asked_classes(gen, train_labels: list[str], cfg: EvaluateConfig, n: int) -> torch.Tensor | None:
    """The classes evaluation asks ``gen`` (a DrumGenerator) for, ``n`` of them: None for an unconditional
    model, else ``evaluate.class_mix``'s (the training clips' mix, or every class in turn)."""
    if not gen.conditional or cfg.class_mix == "even":
        return gen.class_ids(None, n)
    return gen.class_ids(class_mix(train_labels, gen.classes, n), n)


def run_evaluate(generator_path: str | Path, data_dir: str | Path, out_json: str | Path, cfg: EvaluateConfig,
                 train_split: str, render: RenderConfig, log_to_mlflow: bool = True,
                 labels_mode: str = "manifest") -> dict:
    """Generate ``n_generated`` clips through the render path (a conditional model: each class as often as the
    training clips hold it, ``evaluate.class_mix``) and write the metrics JSON (and to MLflow)."""
    from specgan.audio.synthesis import DrumGenerator, sample_seeds

    t0 = time.perf_counter()

    def say(what: str) -> None:  # the step takes a minute on a CPU: never a silent one
        print(f"evaluate: {what} ({time.perf_counter() - t0:.0f} s)", flush=True)  # stdout: errors stay one line

    gen = DrumGenerator.load(generator_path)
    feat = gen.features
    say(f"reading the real clips ({cfg.real_split} and {train_split})")
    heldout = load_real(data_dir, cfg.real_split, feat, cfg.min_heldout, labels_mode)
    train = load_real(data_dir, train_split, feat, labels_mode=labels_mode)
    z = gen.latents(sample_seeds(cfg.seed, cfg.n_generated))
    y = asked_classes(gen, train.labels, cfg, cfg.n_generated)
    say(f"generating {cfg.n_generated} clips through Griffin-Lim ({render.griffin_lim_iters} iterations)")
    audio = fit_length(gen.audio(z, render, y).cpu().numpy(), feat.clip_samples)
    say(f"metrics on {len(heldout.audio)} held-out and {len(train.audio)} training clips (real clips through "
        f"Griffin-Lim, {cfg.bootstrap} bootstrap resamples)")
    if train_split == "all" or train_split == cfg.real_split:
        log.warning("the held-out split %r is part of the training split %r: the nn_train baseline and the "
                    "memorization flag mean nothing", cfg.real_split, train_split)
    requested = None if y is None else [gen.classes[i] for i in y.tolist()]
    def round_trip(clips: np.ndarray) -> np.ndarray:
        return fit_length(gen.round_trip(clips, render).cpu().numpy(), feat.clip_samples)

    metrics = evaluate_audio(audio, heldout, train, cfg, feat.sample_rate, requested, round_trip)
    if requested:
        metrics["class_asked"] = shares_of(requested, gen.classes)
    metrics["run_id"] = gen.provenance.get("run_id", "")
    metrics["generator_sha256"] = file_sha256(Path(generator_path))
    metrics["iterations"] = int(gen.provenance.get("iterations", 0))
    if log_to_mlflow:
        metrics["evaluation_run_id"] = _log_metrics(metrics)
    write_json(out_json, metrics)
    say(f"done: {out_json}")
    return metrics


def _log_metrics(metrics: dict) -> str:
    """Log the evaluation as its own MLflow run, linked to the training run by tag (the training run's history
    is never changed after it finished); returns the new run's id."""
    import mlflow

    from specgan.core.tracking import start_run, tracking_uri

    tags = {"specgan.step": "evaluate", "specgan.training_run_id": metrics["run_id"],
            "generator_sha256": metrics["generator_sha256"]}
    name = f"evaluate {metrics['generator_sha256'][:8]}"
    try:  # named after the training run it evaluates: "evaluate train stable (seed 0)"
        name = f"evaluate {mlflow.MlflowClient(tracking_uri()).get_run(metrics['run_id']).info.run_name}"[:250]
    except Exception:  # noqa: BLE001 (no such run here: the generator came from elsewhere)
        pass
    with start_run(run_name=name, tags=tags) as run:
        mlflow.log_metrics({f"quality/{k}": v for k, v in numeric_metrics(metrics).items()
                            if np.isfinite(v)}, step=metrics["iterations"])
        return run.info.run_id
