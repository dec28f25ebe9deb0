"""Write the ``stsb_genre`` corpus as CSV files for ``bayeshead bench run --data`` (issue 19's second
real corpus, next to the tweets): the genre of an STS-B training sentence (captions / news / forum),
800 train / 200 validation / 400 test sentences, the same seeded split as
``benchmarks/vbll_defaults_features.py`` (data seed 0; one row per distinct sentence, so no sentence
is in two splits), and 200 ARC-Easy dev questions as the OOD file (as the quick suite's).

    python benchmarks/stsb_genre_files.py --out outputs/stsb_genre --data-dir ../shared/data
    bayeshead bench run benchmarks/vbll-defaults.yaml --data outputs/stsb_genre/train.csv \\
        --val outputs/stsb_genre/val.csv --test outputs/stsb_genre/test.csv --ood outputs/stsb_genre/ood.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vbll_defaults_features import stsb_genre  # noqa: E402

from bayeshead.bench.data import arc_easy_questions  # noqa: E402
from bayeshead.data.stsb import STSB_GENRES  # noqa: E402


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(("text", "label"))
        out.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/stsb_genre"))
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--n-ood", type=int, default=200)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, (texts, labels) in stsb_genre(args.data_dir).items():
        write(args.out / f"{split}.csv", [(t, STSB_GENRES[int(y)]) for t, y in zip(texts, labels, strict=True)])
        print(split, len(texts), "rows, classes", labels.bincount(minlength=len(STSB_GENRES)).tolist())
    questions = arc_easy_questions(Path(args.data_dir), args.n_ood, seed=0)
    write(args.out / "ood.csv", [(q, "ood") for q in questions])
    print("ood", len(questions), "ARC-Easy questions")


if __name__ == "__main__":
    main()
