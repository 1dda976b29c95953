"""Pairs files against hand-written expectations; balanced pairs against brute-force
enumeration and a chi-square test of uniformity (scipy)."""

from __future__ import annotations

import runpy
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest
from scipy.stats import chisquare

from visionzoo.core.io import DataError
from visionzoo.recognition.pairs import (
    Pair,
    balanced_pairs,
    read_lfw_pairs,
    read_pairs_csv,
    write_pairs_csv,
)

# Two folds of one same + one different pair each (LFW's layout, tab separated).
PAIRS_TXT = """2\t1
Abel_Pacheco\t1\t4
Abdullah_Gul\t13\tAbel_Pacheco\t2
Akhmed_Zakayev\t1\t3
Zico\t3\tZhu_Rongji\t10
"""


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_lfw_pairs_txt(tmp_path: Path) -> None:
    lfw = tmp_path / "lfw"
    files = [
        "Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg",
        "Abdullah_Gul/Abdullah_Gul_0013.jpg", "Abel_Pacheco/Abel_Pacheco_0002.jpg",
        "Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg", "Akhmed_Zakayev/Akhmed_Zakayev_0003.jpg",
        "Zico/Zico_0003.jpg", "Zhu_Rongji/Zhu_Rongji_0010.jpg",
    ]  # fmt: skip
    _touch(lfw, *files)
    (tmp_path / "pairs.txt").write_text(PAIRS_TXT)
    got = read_lfw_pairs(tmp_path / "pairs.txt", lfw)
    expected = [
        Pair(str(lfw / files[2 * i]), str(lfw / files[2 * i + 1]), same)
        for i, same in enumerate([True, False, True, False])
    ]
    assert got == expected
    # A one-number header (View 1's pairsDevTrain.txt: pairs per class) reads the same.
    (tmp_path / "dev.txt").write_text("2\n" + PAIRS_TXT.split("\n", 1)[1])
    assert read_lfw_pairs(tmp_path / "dev.txt", lfw) == expected


def test_lfw_pairs_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text(PAIRS_TXT)
    with pytest.raises(DataError, match=r"p\.txt:2: image .*Abel_Pacheco_0001\.jpg"):
        read_lfw_pairs(tmp_path / "p.txt", tmp_path)  # no images there
    (tmp_path / "bad.txt").write_text(PAIRS_TXT.replace("Zico\t3\tZhu_Rongji\t10", "Zico\t3"))
    with pytest.raises(DataError, match=r"bad\.txt:5: expected 'name n1 n2'"):
        read_lfw_pairs(tmp_path / "bad.txt", tmp_path, check_exists=False)
    (tmp_path / "nan.txt").write_text(PAIRS_TXT.replace("Zico\t3\t", "Zico\t"))
    with pytest.raises(DataError, match=r"nan\.txt:5: image number 'Zhu_Rongji'"):
        read_lfw_pairs(tmp_path / "nan.txt", tmp_path, check_exists=False)
    (tmp_path / "cut.txt").write_text("".join(PAIRS_TXT.splitlines(True)[:4]))
    with pytest.raises(DataError, match=r"cut\.txt.*announces 4 pairs.*has 3"):
        read_lfw_pairs(tmp_path / "cut.txt", tmp_path, check_exists=False)


def test_pairs_csv(tmp_path: Path) -> None:
    _touch(tmp_path, "set/a/1.png", "set/a/2.png", "set/b/1.png", "abs/c.png")
    absolute = tmp_path / "abs" / "c.png"
    (tmp_path / "set" / "pairs.csv").write_text(
        f"path1,path2,same\na/1.png,a/2.png,1\na/1.png,b/1.png,false\nb/1.png,{absolute},0\n"
        "a/2.png, a/1.png ,TRUE\n"
    )
    root = tmp_path / "set"
    expected = [
        Pair(str(root / "a/1.png"), str(root / "a/2.png"), True),
        Pair(str(root / "a/1.png"), str(root / "b/1.png"), False),
        Pair(str(root / "b/1.png"), str(absolute), False),
        Pair(str(root / "a/2.png"), str(root / "a/1.png"), True),
    ]
    assert read_pairs_csv(root / "pairs.csv") == expected
    (root / "nohead.csv").write_text("a/1.png,a/2.png,1\n")
    assert read_pairs_csv(root / "nohead.csv") == expected[:1]
    (root / "bad.csv").write_text("path1,path2,same\na/1.png,a/2.png,1\na/1.png,b/1.png,maybe\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: expected 'path1,path2,same'"):
        read_pairs_csv(root / "bad.csv")
    (root / "missing.csv").write_text("a/1.png,a/9.png,1\n")
    with pytest.raises(DataError, match=r"missing\.csv:1: image .*9\.png"):
        read_pairs_csv(root / "missing.csv")
    # write -> read round trip, paths relative to the CSV's folder
    write_pairs_csv(root / "out.csv", expected)
    assert "a/1.png,a/2.png,1" in (root / "out.csv").read_text()
    assert read_pairs_csv(root / "out.csv") == [
        p._replace(path2=str(root / "../abs/c.png")) if p.path2 == str(absolute) else p
        for p in expected
    ]


GROUPS = {"b": ["b1", "b2"], "a": ["a1", "a2", "a3"], "c": ["c1"]}


def test_balanced_pairs_all_same_and_as_many_different() -> None:
    pairs = balanced_pairs(GROUPS, seed=3)
    same = {frozenset((p.path1, p.path2)) for p in pairs if p.same}
    brute = {frozenset((x, y)) for v in GROUPS.values() for x in v for y in v if x < y}
    assert same == brute and sum(p.same for p in pairs) == 4
    different = [frozenset((p.path1, p.path2)) for p in pairs if not p.same]
    assert len(different) == len(set(different)) == 4
    owner = {x: k for k, v in GROUPS.items() for x in v}
    assert all(len({owner[x] for x in d}) == 2 for d in different)
    assert balanced_pairs(dict(reversed(GROUPS.items())), seed=3) == pairs  # order-independent
    assert any(balanced_pairs(GROUPS, seed=s) != pairs for s in range(4, 8))


def test_balanced_pairs_are_uniform() -> None:
    # 4 same pairs available, 2 drawn; 11 cross pairs, 2 drawn: each pair equally often.
    same_hits, diff_hits = Counter(), Counter()
    for seed in range(1000):
        for p in balanced_pairs(GROUPS, num_same=2, seed=seed):
            (same_hits if p.same else diff_hits)[frozenset((p.path1, p.path2))] += 1
    assert len(same_hits) == 4 and len(diff_hits) == 6 * 3 - 4 - 3  # 11
    assert chisquare(list(same_hits.values())).pvalue > 1e-3
    assert chisquare(list(diff_hits.values())).pvalue > 1e-3


def test_balanced_pairs_num_same_too_large() -> None:
    with pytest.raises(ValueError, match="num_same=5"):
        balanced_pairs(GROUPS, num_same=5)


# runpy re-executes a module the package already imported; that warning is expected here.
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_cli_writes_balanced_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for person, n in (("ann", 3), ("bob", 2), ("cy", 2)):
        _touch(tmp_path / "people", *(f"{person}/{k}.jpg" for k in range(n)))
    out = tmp_path / "lists" / "pairs.csv"
    argv = ["pairs", str(tmp_path / "people"), str(out), "--num-same", "3", "--seed", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_module("visionzoo.recognition.pairs", run_name="__main__")
    pairs = read_pairs_csv(out)  # relative to lists/, so ../people/...
    assert sum(p.same for p in pairs) == 3 and len(pairs) == 6
    same = {frozenset(map(Path, (p.path1, p.path2))) for p in pairs if p.same}
    people = tmp_path / "lists" / ".." / "people"
    every = {
        frozenset((people / p / f"{i}.jpg", people / p / f"{j}.jpg"))
        for p, n in (("ann", 3), ("bob", 2), ("cy", 2))
        for i, j in combinations(range(n), 2)
    }
    assert same <= every
