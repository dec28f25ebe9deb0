"""Frozen all-MiniLM-L6-v2 features (mean pooling, max length 64, as the quick suite) for the
VBLL-defaults study (benchmarks/vbll_defaults.py), cached to one .pt file per corpus.

Corpora (800 train / 200 val / 400 test, seeded subsample, data seed 0):
* ``tweets``: tweet sentiment (3 classes; bayeshead.bench.data.tweet_benchmark, as the quick suite);
* ``stsb_genre``: the genre of an STS-B training sentence (sentence1 of sts-train.csv:
  captions / news / forum), a real 3-class source-classification corpus that is easy for MiniLM.

    python benchmarks/vbll_defaults_features.py --out /tmp/vbd
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bayeshead.backbones.huggingface import HuggingFaceBackbone
from bayeshead.bench.data import tweet_benchmark
from bayeshead.data.stsb import STSB_GENRES, read_stsb, stsb_path

SIZES = (800, 200, 400)


@torch.no_grad()
def embed(backbone: HuggingFaceBackbone, texts: list[str], batch: int = 64) -> torch.Tensor:
    rows = [backbone.features(backbone.tokenize(texts[i : i + batch])) for i in range(0, len(texts), batch)]
    return torch.cat(rows).float()


def tweets() -> dict[str, tuple[list[str], torch.Tensor]]:
    data = tweet_benchmark(*SIZES, n_ood=0, seed=0)
    return {name: (split.texts, split.labels) for name, split in (("train", data.train), ("val", data.val), ("test", data.test))}


def stsb_genre(data_dir: str | None) -> dict[str, tuple[list[str], torch.Tensor]]:
    pairs = read_stsb(stsb_path("train", data_dir))
    seen: set[str] = set()
    texts, labels = [], []
    for p in pairs:  # one row per distinct sentence, so no sentence is in two splits
        if p.sentence1 not in seen:
            seen.add(p.sentence1)
            texts.append(p.sentence1)
            labels.append(STSB_GENRES.index(p.genre))
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0)).tolist()
    out, start = {}, 0
    for name, n in zip(("train", "val", "test"), SIZES, strict=True):
        idx = order[start : start + n]
        out[name] = ([texts[i] for i in idx], torch.tensor([labels[i] for i in idx]))
        start += n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vbd"))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    backbone = HuggingFaceBackbone.from_pretrained(max_length=64).eval()
    for name, splits in (("tweets", tweets()), ("stsb_genre", stsb_genre(args.data_dir))):
        blob = {split: {"x": embed(backbone, texts), "y": labels.long()} for split, (texts, labels) in splits.items()}
        torch.save(blob, args.out / f"{name}.pt")
        print(name, {k: tuple(v["x"].shape) for k, v in blob.items()}, "classes", blob["train"]["y"].bincount().tolist())


if __name__ == "__main__":
    main()
