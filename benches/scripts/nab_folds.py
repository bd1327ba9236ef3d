#!/usr/bin/env python3
"""Leave-one-category-out with a setting chosen per fold (issue 14's protocol).

    python3 benches/scripts/nab_folds.py [--nab DIR] RESULTS_DIR [RESULTS_DIR ...]

Each RESULTS_DIR holds one detector variant's NAB results (`<category>/<name>.csv` with an
`anomaly_score` column, as `benches/scripts/nab.sh NAB_DIR RESULTS_DIR` writes). For each
category that has windows, the variant and threshold are chosen on the *other* categories
(the variant whose standard score there, at its best threshold, is highest), and the
category is scored with both: nothing is chosen on the series it is scored on. Prints each
variant's LOCO (threshold per fold, variant fixed) and the LOCO with the variant chosen per
fold. Uses `nab_score` (benches/examples) from the debug build: run nab.sh once first.
Standard library only.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


def nab_score(nab, results):
    exe = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/vigil/target")),
                       "debug", "examples", "nab_score")
    out = subprocess.run([exe, "--nab", nab, "--results", results], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    standard = next(l for l in out if l.startswith("standard"))
    at = next(i for i, l in enumerate(out) if l.startswith("standard") and "mean of" in l)
    per_category = {}
    for line in out[at + 1:]:
        if not line.startswith("  "):
            break
        name, score = line.split()[:2]
        per_category[name] = float(score)
    return float(standard.split()[1]), per_category


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nab", default="/work/shared/data/nab")
    ap.add_argument("results", nargs="+")
    args = ap.parse_args()
    labels = json.load(open(os.path.join(args.nab, "labels", "combined_windows.json")))
    categories = sorted({k.split("/")[0] for k, w in labels.items() if w})
    with tempfile.TemporaryDirectory() as tmp:
        folds = {}
        for c in categories:
            d = os.path.join(tmp, c)
            os.makedirs(os.path.join(d, "labels"))
            os.symlink(os.path.abspath(os.path.join(args.nab, "data")), os.path.join(d, "data"))
            os.symlink(os.path.abspath(os.path.join(args.nab, "config")), os.path.join(d, "config"))
            json.dump({k: w for k, w in labels.items() if not k.startswith(c + "/")},
                      open(os.path.join(d, "labels", "combined_windows.json"), "w"))
            folds[c] = d
        held_out, trained = {}, {}
        for r in args.results:
            _, held_out[r] = nab_score(args.nab, r)
            trained[r] = {c: nab_score(folds[c], r)[0] for c in categories}
            mean = sum(held_out[r][c] for c in categories) / len(categories)
            print(f"{r}: LOCO {mean:.2f}  " + " ".join(f"{c} {held_out[r][c]:.1f}" for c in categories))
    chosen = []
    for c in categories:
        best = max(args.results, key=lambda r: trained[r][c])
        chosen.append(held_out[best][c])
        print(f"  {c}: chosen {best} (standard {trained[best][c]:.2f} on the others), held out {held_out[best][c]:.2f}")
    print(f"LOCO with the variant chosen per fold: {sum(chosen) / len(chosen):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
