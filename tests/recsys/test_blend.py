"""The shared blend: math against a plain numpy reference, filters, per-page category cap, cold start."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from recsys.blend import blend, diversify_order, normalize_scores
from recsys.blend_arrays import SOURCES, _greedy_pages, blend_arrays
from recsys.config import BlendConfig
from recsys.encoding import SOURCE_BITS

NO_CAP = BlendConfig(max_per_category=0, cold_start_min_interactions=0)
HISTORY_COLS = ["user_id", "product_id", "purchased", "viewed"]


def cands(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "product_id", "source", "score"])


def history(rows: list[tuple[str, str, bool, bool]] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows or [], columns=HISTORY_COLS).astype({"purchased": bool, "viewed": bool})


def catalogue(
    pids: list[str], categories: list[str] | None = None, unavailable: tuple[str, ...] = ()
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": pids,
            "category": categories or [f"c{i}" for i in range(len(pids))],
            "available": [p not in unavailable for p in pids],
        }
    )


def reference_blend(
    frame: pd.DataFrame, cfg: BlendConfig, n: dict[str, int]
) -> dict[str, list[tuple[str, float, int]]]:
    """Plain numpy, one user and one source at a time: min-max, weights, cold-start ramp, sum, sort."""
    weights = {
        "cf": cfg.weight_cf,
        "content": cfg.weight_content,
        "itemknn": cfg.weight_itemknn,
        "popular": cfg.weight_popular,
    }
    out: dict[str, list[tuple[str, float, int]]] = {}
    for user in sorted(set(frame.user_id)):
        totals: dict[str, float] = {}
        bits: dict[str, int] = {}
        ramp = (
            1.0
            if cfg.cold_start_min_interactions <= 0
            else min(1.0, n.get(user, 0) / cfg.cold_start_min_interactions)
        )
        for source in ("cf", "content", "itemknn", "popular"):
            rows = frame[(frame.user_id == user) & (frame.source == source)]
            if rows.empty:
                continue
            s = rows.score.to_numpy(dtype=float)
            norm = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.ones_like(s)
            w = weights[source] * (ramp if source in ("cf", "itemknn") else 1.0)
            for pid, v in zip(rows.product_id, norm, strict=True):
                totals[pid] = totals.get(pid, 0.0) + w * v
                bits[pid] = bits.get(pid, 0) | SOURCE_BITS[source]
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[: cfg.top_n]
        out[user] = [(pid, score, bits[pid]) for pid, score in ranked]
    return out


def as_lists(result: pd.DataFrame) -> dict[str, list[tuple[str, float, int]]]:
    return {
        user: list(zip(g.product_id, g.score, g.sources, strict=True))
        for user, g in result.sort_values(["user_id", "rank"]).groupby("user_id")
    }


def test_blend_matches_numpy_reference() -> None:
    rng = np.random.default_rng(7)
    rows = []
    for user in ("u1", "u2", "u3"):
        for source, scale in (("cf", 3.0), ("content", 1.0), ("itemknn", 20.0), ("popular", 500.0)):
            for pid in rng.choice([f"p{i:02d}" for i in range(30)], size=8, replace=False):
                rows.append((user, str(pid), source, float(rng.random() * scale)))
    frame = cands(rows)
    cfg = dataclasses.replace(NO_CAP, top_n=12, cold_start_min_interactions=4)
    n = {"u1": 10, "u2": 2, "u3": 0}
    result = blend(
        frame,
        history=history(),
        products=catalogue([f"p{i:02d}" for i in range(30)]),
        n_interactions=n,
        cfg=cfg,
    )
    got, want = as_lists(result), reference_blend(frame, cfg, n)
    assert got.keys() == want.keys()
    for user, items in want.items():
        assert [p for p, _, _ in got[user]] == [p for p, _, _ in items]
        np.testing.assert_allclose([s for _, s, _ in got[user]], [s for _, s, _ in items], rtol=1e-12)
        assert [b for _, _, b in got[user]] == [b for _, _, b in items]
    assert result.groupby("user_id")["rank"].apply(list).to_dict() == {u: list(range(1, 13)) for u in want}


def test_blend_exact_small_case() -> None:
    frame = cands(
        [
            ("u1", "a", "cf", 1.0),
            ("u1", "b", "cf", 3.0),
            ("u1", "a", "content", 0.5),
            ("u1", "c", "popular", 9.0),
            ("u1", "c", "popular", 2.0),
        ]
    )
    cfg = dataclasses.replace(NO_CAP, weight_cf=1.0, weight_content=0.5, weight_popular=0.25)
    result = blend(
        frame, history=history(), products=catalogue(["a", "b", "c"]), n_interactions={"u1": 5}, cfg=cfg
    )
    want = pd.DataFrame(
        {
            "user_id": ["u1"] * 3,
            "product_id": ["b", "a", "c"],
            "score": [1.0, 0.5, 0.25],
            "sources": [1, 1 | 2, 4],
            "rank": [1, 2, 3],
        }
    ).astype({"sources": "int64", "rank": "int64"})
    assert_frame_equal(result, want)


def test_rank_normalization() -> None:
    frame = pd.DataFrame({"user_id": ["u"] * 3 + ["v"], "source": ["cf"] * 4, "score": [5.0, 9.0, 7.0, 1.0]})
    np.testing.assert_allclose(
        normalize_scores(frame, method="rank"), [1 / np.log2(4), 1.0, 1 / np.log2(3), 1.0]
    )
    np.testing.assert_allclose(normalize_scores(frame, method="minmax"), [0.0, 1.0, 0.5, 1.0])


def test_filters_purchased_unavailable_and_unknown() -> None:
    frame = cands(
        [("u1", p, "cf", s) for p, s in [("a", 5), ("b", 4), ("c", 3), ("d", 2), ("e", 1), ("z", 9)]]
        + [("u2", "a", "cf", 1.0)]
    )
    hist = history([("u1", "a", True, True), ("u1", "b", False, True), ("u2", "c", True, False)])
    prods = catalogue(["a", "b", "c", "d", "e"], unavailable=("d",))
    kept = blend(frame, history=hist, products=prods, n_interactions={}, cfg=NO_CAP)
    # a purchased (u1 only), d unavailable, z unknown to the catalogue; b merely viewed is kept by default.
    assert kept[["user_id", "product_id"]].values.tolist() == [
        ["u1", "b"],
        ["u1", "c"],
        ["u1", "e"],
        ["u2", "a"],
    ]
    strict = blend(
        frame,
        history=hist,
        products=prods,
        n_interactions={},
        cfg=dataclasses.replace(NO_CAP, drop_viewed=True),
    )
    assert strict[["user_id", "product_id"]].values.tolist() == [["u1", "c"], ["u1", "e"], ["u2", "a"]]


def test_category_cap_per_page() -> None:
    # Six "x" products ahead of three "y": with pages of 3 and at most 2 of a category per page.
    pids = [f"x{i}" for i in range(6)] + ["y0", "y1", "y2"]
    frame = cands([("u1", p, "cf", float(10 - i)) for i, p in enumerate(pids)])
    prods = catalogue(pids, ["x"] * 6 + ["y"] * 3)
    cfg = dataclasses.replace(NO_CAP, max_per_category=2, page_size=3, top_n=9)
    got = blend(frame, history=history(), products=prods, n_interactions={"u1": 9}, cfg=cfg)
    assert got.product_id.tolist() == ["x0", "x1", "y0", "x2", "x3", "y1", "x4", "x5", "y2"]
    pages = got.assign(page=(got["rank"] - 1) // 3, cat=got.product_id.str[0])
    assert pages.groupby(["page", "cat"]).size().max() == 2


def test_category_cap_ends_list_when_page_cannot_be_filled() -> None:
    order = diversify_order(["x", "x", "x", "x", "y"], page_size=2, max_per_category=1, top_n=10)
    # Page 1: x0, y; page 2 can hold only one x and nothing else: the list ends after it.
    assert order == [0, 4, 1]


def test_cap_disabled_keeps_score_order() -> None:
    assert diversify_order(["x"] * 5, page_size=3, max_per_category=3, top_n=4) == [0, 1, 2, 3]
    assert diversify_order(["x"] * 5, page_size=3, max_per_category=0, top_n=4) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("cap", "size", "top_n", "n_categories"), [(1, 2, 10, 2), (2, 5, 23, 4), (10, 20, 100, 2), (3, 4, 4, 1)]
)
def test_greedy_pages_give_diversify_order_for_every_user(
    cap: int, size: int, top_n: int, n_categories: int
) -> None:
    rng = np.random.default_rng(cap * 100 + top_n)
    lengths = rng.integers(0, 3 * top_n, 200)
    user = np.repeat(np.arange(len(lengths)), lengths)
    # -1 (unknown category) is a category of its own, as in diversify_order.
    category = rng.integers(-1, n_categories, len(user))
    take, rank = _greedy_pages(user, category, cap=cap, size=size, top_n=top_n)
    starts = np.r_[0, np.cumsum(lengths)]
    expected_take, expected_rank = [], []
    for u in range(len(lengths)):
        order = diversify_order(
            category[starts[u] : starts[u + 1]].tolist(), page_size=size, max_per_category=cap, top_n=top_n
        )
        expected_take += [starts[u] + i for i in order]
        expected_rank += list(range(1, len(order) + 1))
    got = sorted(zip(user[take].tolist(), rank.tolist(), take.tolist(), strict=True))
    want = sorted(zip(user[expected_take].tolist(), expected_rank, expected_take, strict=True))
    assert got == want
    # The cap bites: some lists are reordered and some end early, so the comparison means something.
    plain = [(u, r, starts[u] + r - 1) for u in range(len(lengths)) for r in range(1, min(lengths[u], top_n) + 1)]
    assert want != sorted(plain)


def test_cold_start_leans_on_content_and_popular() -> None:
    frame = cands(
        [(u, "cfitem", "cf", 1.0) for u in ("new", "few", "old")]
        + [(u, "cfitem2", "cf", 0.0) for u in ("new", "few", "old")]
        + [(u, "contentitem", "content", 1.0) for u in ("new", "few", "old")]
    )
    cfg = dataclasses.replace(NO_CAP, weight_cf=1.0, weight_content=0.6, cold_start_min_interactions=4)
    got = blend(
        frame,
        history=history(),
        products=catalogue(["cfitem", "cfitem2", "contentitem"]),
        n_interactions=pd.Series({"few": 2, "old": 4}),
        cfg=cfg,
    )
    top = got[got["rank"] == 1].set_index("user_id")
    assert top.loc["new", "product_id"] == "contentitem"
    assert top.loc["few", "product_id"] == "contentitem"  # 0.5 * 1.0 < 0.6
    assert top.loc["old", "product_id"] == "cfitem"
    scores = got.set_index(["user_id", "product_id"])["score"]
    assert (
        scores[("new", "cfitem")] == 0.0
        and scores[("few", "cfitem")] == 0.5
        and scores[("old", "cfitem")] == 1.0
    )


def test_errors_name_the_column_and_key() -> None:
    good = cands([("u1", "a", "cf", 1.0)])
    with pytest.raises(ValueError, match="products is missing column.*available"):
        blend(
            good,
            history=history(),
            products=pd.DataFrame({"product_id": ["a"], "category": ["c"]}),
            n_interactions={},
            cfg=NO_CAP,
        )
    with pytest.raises(ValueError, match="unknown value.*'als'"):
        blend(
            cands([("u1", "a", "als", 1.0)]),
            history=history(),
            products=catalogue(["a"]),
            n_interactions={},
            cfg=NO_CAP,
        )
    with pytest.raises(ValueError, match="blend.normalization"):
        blend(
            good,
            history=history(),
            products=catalogue(["a"]),
            n_interactions={},
            cfg=dataclasses.replace(NO_CAP, normalization="zscore"),
        )


def test_empty_input_gives_typed_empty_frame() -> None:
    got = blend(cands([]), history=history(), products=catalogue([]), n_interactions={}, cfg=NO_CAP)
    assert list(got.columns) == ["user_id", "product_id", "score", "sources", "rank"]
    assert got.empty and str(got["rank"].dtype) == "int64"


def reference_full(
    frame: pd.DataFrame, hist: pd.DataFrame, prods: pd.DataFrame, n: dict[str, int], cfg: BlendConfig
) -> list[tuple[str, str, float, int, int]]:
    """The module docstring step by step in plain Python, one user at a time."""
    weights = {"cf": cfg.weight_cf, "content": cfg.weight_content}
    weights |= {"itemknn": cfg.weight_itemknn, "popular": cfg.weight_popular}
    best: dict[tuple[str, str, str], float] = {}
    for user, pid, source, score in frame.itertuples(index=False):
        if np.isfinite(score):
            best[(user, pid, source)] = max(score, best.get((user, pid, source), -np.inf))
    drop = {
        (u, p)
        for u, p, bought, viewed in hist.itertuples(index=False)
        if bought or (cfg.drop_viewed and viewed)
    }
    catalogue = {p: (c, a) for p, c, a in prods.itertuples(index=False)}  # the last row of a product wins
    out = []
    for user in sorted({u for u, _, _ in best}):
        ramp = (
            1.0
            if cfg.cold_start_min_interactions <= 0
            else min(1.0, n.get(user, 0) / cfg.cold_start_min_interactions)
        )
        totals: dict[str, float] = {}
        bits: dict[str, int] = {}
        for source in ("cf", "content", "itemknn", "popular"):
            mine = {p: s for (u, p, src), s in best.items() if u == user and src == source}
            if not mine:
                continue
            lo, hi = min(mine.values()), max(mine.values())
            for pid, s in mine.items():
                if cfg.normalization == "rank":
                    norm = 1.0 / np.log2(1.0 + 1 + sum(v > s for v in mine.values()))
                else:
                    norm = (s - lo) / (hi - lo) if hi > lo else 1.0
                w = weights[source] * (ramp if source in ("cf", "itemknn") else 1.0)
                totals[pid] = totals.get(pid, 0.0) + norm * w
                bits[pid] = bits.get(pid, 0) | SOURCE_BITS[source]
        kept = [p for p in totals if (user, p) not in drop and catalogue.get(p, (None, False))[1]]
        pool = sorted(kept, key=lambda p: (-totals[p], p))[: cfg.top_n * 3]
        shown: list[str] = []
        capped = 0 < cfg.max_per_category < cfg.page_size
        while pool and len(shown) < cfg.top_n:
            room = min(cfg.page_size, cfg.top_n - len(shown))
            page: list[str] = []
            for p in pool:
                same = sum(catalogue[q][0] == catalogue[p][0] for q in page)
                if len(page) < room and (not capped or same < cfg.max_per_category):
                    page.append(p)
            shown += page
            pool = [p for p in pool if p not in page]
            if len(page) < room:
                break
        out += [(user, p, totals[p], bits[p], r) for r, p in enumerate(shown, start=1)]
    return out


def random_case(
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int], BlendConfig]:
    """Several users; scores whose blend is exact in floating point, so that ties are real ties.

    With minmax, each (user, source) spans 0..8 and the weights are powers of two: every sum is exact
    whatever its order. With rank, each product comes from one source per user, so there is nothing to sum.
    """
    rank = rng.random() < 0.3
    pids = [f"p{i:02d}" for i in range(int(rng.integers(3, 40)))]
    rows = []
    for user in [f"u{i}" for i in range(int(rng.integers(1, 5)))]:
        order = rng.permutation(pids).tolist()
        for k, source in enumerate(SOURCE_BITS):
            picked = (
                order[k::4]
                if rank
                else rng.choice(pids, size=min(len(pids), int(rng.integers(2, 12))), replace=False)
            )
            scores = rng.integers(0, 9, size=len(picked)).astype(float)
            if not rank and len(picked) >= 2:
                scores[:2] = [0.0, 8.0]
            rows += [(user, str(p), source, s) for p, s in zip(picked, scores, strict=True)]
            if len(picked):  # a repeat with a lower score and a non-finite score: both ignored
                rows += [
                    (user, str(picked[0]), source, scores[0] - 1.0),
                    (user, str(picked[-1]), source, np.nan),
                ]
    frame = cands(rows).sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
    users = sorted(set(frame.user_id))
    hist = history(
        [
            (str(rng.choice(users)), str(rng.choice(pids)), bool(rng.random() < 0.5), True)
            for _ in range(int(rng.integers(0, 8)))
        ]
    )
    listed = [p for p in pids if rng.random() < 0.9]
    dup = listed[: int(rng.integers(0, 3))]  # products listed twice: the last row counts
    prods = pd.DataFrame(
        {
            "product_id": listed + dup,
            "category": [f"c{rng.integers(0, 3)}" for _ in listed + dup],
            "available": [bool(rng.random() < 0.9) for _ in listed + dup],
        }
    )
    pow2 = (0.0, 0.25, 0.5, 1.0, 2.0)
    cfg = BlendConfig(
        weight_cf=float(rng.choice(pow2)),
        weight_content=float(rng.choice(pow2)),
        weight_itemknn=float(rng.choice(pow2)),
        weight_popular=float(rng.choice(pow2)),
        cold_start_min_interactions=int(rng.choice([0, 4])),
        drop_viewed=bool(rng.random() < 0.3),
        max_per_category=int(rng.integers(0, 4)),
        page_size=int(rng.integers(1, 6)),
        top_n=int(rng.integers(1, 15)),
        normalization="rank" if rank else "minmax",
    )
    n = {u: int(rng.integers(0, 7)) for u in users if rng.random() < 0.8}
    return frame, hist, prods, n, cfg


def test_blend_matches_plain_reference_on_random_multi_user_cases() -> None:
    rng = np.random.default_rng(2024)
    for case in range(300):
        frame, hist, prods, n, cfg = random_case(rng)
        got = blend(frame, history=hist, products=prods, n_interactions=n, cfg=cfg)
        want = reference_full(frame, hist, prods, n, cfg)
        assert list(got.itertuples(index=False, name=None)) == want, f"case {case}: {cfg}"
        assert [str(t) for t in got.dtypes] == ["object", "object", "float64", "int64", "int64"]
        # The same candidates in another order and as one call per user give the same lists.
        shuffled = frame.sample(frac=1.0, random_state=case).reset_index(drop=True)
        assert_frame_equal(blend(shuffled, history=hist, products=prods, n_interactions=n, cfg=cfg), got)
        per_user = [
            blend(frame[frame.user_id == u], history=hist, products=prods, n_interactions=n, cfg=cfg)
            for u in sorted(set(frame.user_id))
        ]
        assert_frame_equal(pd.concat(per_user, ignore_index=True), got, check_dtype=False)


def coded(
    frame: pd.DataFrame,
    hist: pd.DataFrame,
    prods: pd.DataFrame,
    n: dict[str, int],
    rng: np.random.Generator,
    *,
    ids_sorted: bool = False,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """The arguments of ``blend_arrays`` for a case, with codes given in a random order (not pandas'), or
    product codes in id order (``ids_sorted``)."""
    users = rng.permutation(sorted(set(frame.user_id) | set(hist.user_id))).tolist()
    items = sorted(set(frame.product_id) | set(prods.product_id) | set(hist.product_id))
    if not ids_sorted:
        items = rng.permutation(items).tolist()
    ucode = {u: i for i, u in enumerate(users)}
    icode = {p: i for i, p in enumerate(items)}
    last = {p: (c, a) for p, c, a in prods.itertuples(index=False)}  # the last row of a product wins
    categories = {c: i for i, c in enumerate(rng.permutation(sorted(set(prods.category))).tolist())}
    args = {
        "user": np.array([ucode[u] for u in frame.user_id], dtype=np.int64),
        "item": np.array([icode[p] for p in frame.product_id], dtype=np.int64),
        "source": np.array([SOURCES.index(s) for s in frame.source], dtype=np.int64),
        "score": frame.score.to_numpy(dtype=np.float64),
        "items": np.array(items, dtype=object),
        "listed": np.array([bool(last.get(p, (None, False))[1]) for p in items]),
        "category": np.array([categories[last[p][0]] if p in last else -1 for p in items], dtype=np.int64),
        "counts": np.array([float(n.get(u, 0)) for u in users]),
        "hist_user": np.array([ucode[u] for u in hist.user_id], dtype=np.int64),
        "hist_item": np.array([icode[p] for p in hist.product_id], dtype=np.int64),
        "purchased": hist.purchased.to_numpy(dtype=bool),
        "viewed": hist.viewed.to_numpy(dtype=bool),
    }
    return args, np.array(users, dtype=object), np.array(items, dtype=object)


def test_blend_arrays_gives_the_pandas_blend_to_the_bit() -> None:
    """The numpy entry point (the API's on-demand path) and the DataFrame one (the batch) agree exactly."""
    rng = np.random.default_rng(77)
    for case in range(300):
        frame, hist, prods, n, cfg = random_case(rng)
        if case % 3 == 0:  # a single user, as the API calls it
            frame = frame[frame.user_id == frame.user_id.iloc[0]].reset_index(drop=True)
        want = blend(frame, history=hist, products=prods, n_interactions=n, cfg=cfg)
        args, users, items = coded(frame, hist, prods, n, rng)
        out = blend_arrays(**args, cfg=cfg)
        got = sorted(
            zip(
                users[out.user].tolist(),
                items[out.item].tolist(),
                out.score.tolist(),
                out.sources.tolist(),
                out.rank.tolist(),
                strict=True,
            ),
            key=lambda row: (row[0], row[4]),
        )
        assert got == list(want.itertuples(index=False, name=None)), f"case {case}: {cfg}"
        assert [a.dtype for a in out] == [np.int64, np.int64, np.float64, np.int64, np.int64]


def test_blend_arrays_with_codes_in_id_order_ranks_as_the_pandas_blend() -> None:
    """``ids_sorted`` (the batch kernel's codes) breaks ties on codes: the same lists as comparing the ids."""
    rng = np.random.default_rng(78)
    tied = 0
    for case in range(300):
        frame, hist, prods, n, cfg = random_case(rng)
        want = blend(frame, history=hist, products=prods, n_interactions=n, cfg=cfg)
        args, users, items = coded(frame, hist, prods, n, rng, ids_sorted=True)
        out = blend_arrays(**args, cfg=cfg, ids_sorted=True)
        got = sorted(
            zip(
                users[out.user].tolist(),
                items[out.item].tolist(),
                out.score.tolist(),
                out.sources.tolist(),
                out.rank.tolist(),
                strict=True,
            ),
            key=lambda row: (row[0], row[4]),
        )
        assert got == list(want.itertuples(index=False, name=None)), f"case {case}: {cfg}"
        tied += int(want.duplicated(["user_id", "score"]).any())
    assert tied > 30  # ties on score are common, so the tie-break is exercised


def test_blend_arrays_checks_its_arguments() -> None:
    args = {
        "user": np.array([0, 0]),
        "item": np.array([0, 1]),
        "source": np.array([0, 3]),
        "score": np.array([1.0, 2.0]),
        "items": np.array(["p1", "p2"], dtype=object),
        "listed": np.array([True, True]),
        "category": np.array([0, -1]),
        "counts": np.array([3.0]),
    }
    cfg = dataclasses.replace(NO_CAP, weight_cf=1.0, weight_popular=0.1)
    out = blend_arrays(**args, cfg=cfg)  # each source normalises to 1.0: weight_cf 1.0 > weight_popular 0.1
    assert (out.item.tolist(), out.score.tolist(), out.sources.tolist()) == ([0, 1], [1.0, 0.1], [1, 4])
    with pytest.raises(ValueError, match="listed must be a 1-d array of length 2"):
        blend_arrays(**{**args, "listed": np.array([True])}, cfg=NO_CAP)
    with pytest.raises(ValueError, match="source codes must be 0..3"):
        blend_arrays(**{**args, "source": np.array([0, 4])}, cfg=NO_CAP)
    with pytest.raises(ValueError, match="give all four or none"):
        blend_arrays(**args, hist_user=np.array([0]), hist_item=np.array([1]), cfg=NO_CAP)
    history = {"hist_user": np.array([0]), "hist_item": np.array([0]), "viewed": np.array([True])}
    with pytest.raises(ValueError, match="purchased must be a 1-d array of length 1"):
        blend_arrays(**args, **history, purchased=np.array([True, False]), cfg=NO_CAP)
    bought = blend_arrays(**args, **history, purchased=np.array([True]), cfg=NO_CAP)
    assert bought.item.tolist() == [1]
