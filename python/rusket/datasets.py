"""Seeded synthetic purchase logs shaped like real retail order lines.

Uniform random order lines carry no signal: on them nothing beats "most popular items", so they
cannot show what a factor model adds. :func:`make_purchases` draws order lines from a small
generative model with the structure real logs have (customer segments with their own tastes, a
Zipf-like popularity skew, few articles per customer with heavy-tailed activity, repeat purchases
of consumables, log-normal prices, a time order with mild seasonality and new articles), all
reproducible from one seed and vectorised in numpy (a million lines in about two seconds).

The generative model, in short:

* **Catalogue** (:func:`make_articles`): each article belongs to a category (16 retail categories
  with their own price level, purchase frequency, repeat propensity and season) and to a product
  family of ~6 articles of that category (variants, a brand's range). Prices are log-normal
  around the category's median, 2 to 2,000. The global popularity is Zipf (1 / rank over a
  random order) times the category's frequency. About 8% of the articles are launched during the
  period and cannot be bought before their launch date.
* **Segments**: each of ``n_segments`` taste segments prefers a few categories (weight x12) and
  has its own favourite articles (a log-normal taste per article, independent of the global
  ranks), so a segment's best sellers are not the global ones.
* **Customers** (:func:`make_customers`): a primary segment (segments of unequal size), for 40%
  of them a secondary one, three favourite product families drawn from their segment's taste, a
  log-normal activity (most customers buy a handful of articles, a few buy many), a first visit
  (half are there from the start) and, for a third, a last one (churn).
* **Order lines**: each customer's lines are split into orders (~2.2 lines an order) dated over
  the customer's active span. A line of the first order, or with probability
  ``1 - repeat_share`` of a later one, is a *fresh* draw: 10% from the global popularity, 55%
  from one of the customer's favourite families, 35% from their segments' taste (articles not
  yet launched or off-season are redrawn). The other lines *rebuy* an article of an earlier
  order, consumable categories far more often. Quantities are small integers (larger for cheap
  articles), 15% of lines carry a discount, and ``sales_amount = price * quantity * (1 -
  discount)``.

Tastes do not drift, so a customer's later purchases (new articles of their families and
segments, plus rebuys) are predictable from their earlier ones: on a time split (last 20% of the
period) a factor model beats "most popular items" clearly, while popularity stays a non-trivial
baseline (nDCG@10 around 0.1 at the defaults).

Examples
--------
>>> from rusket.datasets import make_purchases
>>> lines = make_purchases(n_customers=100, n_articles=50, n_lines=1_000, seed=1)
>>> list(lines.columns)
['order_id', 'order_date', 'customer_id', 'article_id', 'category', 'quantity', 'sales_amount']
>>> len(lines)
1000
"""

from __future__ import annotations

import datetime as _dt
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from rusket._formats import check_format, convert
from rusket._validation import check_choice, check_float, check_int

__all__ = ["make_articles", "make_customers", "make_purchases"]

# name, median price, purchase frequency, repeat propensity, seasonal peak (day of year), amplitude
_CATEGORIES: tuple[tuple[str, float, float, float, int, float], ...] = (
    ("fresh food", 4.0, 3.0, 1.0, 0, 0.0),
    ("drinks", 5.0, 2.5, 1.0, 190, 0.3),
    ("bakery", 3.0, 2.5, 1.0, 0, 0.0),
    ("snacks", 3.5, 2.0, 0.8, 0, 0.0),
    ("household", 8.0, 1.5, 0.8, 0, 0.0),
    ("personal care", 10.0, 1.5, 0.8, 0, 0.0),
    ("baby", 15.0, 1.0, 0.9, 0, 0.0),
    ("pet supplies", 20.0, 1.0, 0.9, 0, 0.0),
    ("books", 18.0, 0.8, 0.1, 340, 0.3),
    ("toys", 30.0, 0.7, 0.1, 350, 0.8),
    ("clothing", 40.0, 1.0, 0.15, 100, 0.2),
    ("shoes", 80.0, 0.6, 0.1, 100, 0.2),
    ("sports", 60.0, 0.6, 0.15, 150, 0.3),
    ("home decor", 50.0, 0.5, 0.1, 330, 0.3),
    ("garden", 45.0, 0.5, 0.3, 150, 0.8),
    ("electronics", 250.0, 0.4, 0.05, 345, 0.4),
)
_N_NAMED = len(_CATEGORIES)
_LABELS = ("int", "str")
_MIN_PRICE, _MAX_PRICE = 2.0, 2000.0
_NEW_ARTICLE_SHARE = 0.08  # articles launched during the period
_GLOBAL_SHARE = 0.1  # fresh lines drawn from the global popularity
_FAMILY_SHARE = 0.55  # fresh lines drawn from one of the customer's favourite product families
_FAMILY_SIZE = 6  # articles per product family (variants, a brand's range) within a category
_N_FAVOURITE_FAMILIES = 3
_FAMILY_POP_EXPONENT = 0.5  # within a family, variants sell by a flattened popularity
_CATEGORY_BOOST = 12.0  # weight of a segment's preferred categories over the others
_TASTE_SIGMA = 2.0  # spread of a segment's log-normal taste for single articles
_ACTIVITY_SIGMA = 1.1  # spread of the customers' log-normal activity
_NEW_ORDER_PROB = 0.45  # a line opens a new order with this probability (~2.2 lines an order)


@dataclass(frozen=True)
class _Catalogue:
    category: np.ndarray  # int64 index into names, per article
    price: np.ndarray  # float64
    popularity: np.ndarray  # float64, Zipf times category frequency, sums to 1
    launch: np.ndarray  # float64 day (relative to start) from which the article is on sale
    by_family: np.ndarray  # article indices sorted by family
    family_start: np.ndarray  # offsets of each family in by_family, length n_families + 1
    names: list[str]
    frequency: np.ndarray  # per category: how often its articles are bought
    repeat: np.ndarray  # per category
    peak: np.ndarray  # per category, day of year
    amplitude: np.ndarray  # per category


@dataclass(frozen=True)
class _Customers:
    segment: np.ndarray  # int64 primary segment
    second: np.ndarray  # int64 secondary segment
    second_share: np.ndarray  # float64 share of segment draws from the secondary segment
    activity: np.ndarray  # float64
    first: np.ndarray  # float64 day of the first possible visit
    last: np.ndarray  # float64 day after the last possible visit


def _rng(seed: int, stream: int) -> np.random.Generator:
    # Independent streams per table, so the catalogue and the customers do not depend on the
    # number of order lines: make_articles / make_customers describe the same world.
    return np.random.default_rng([seed, stream])


def _category_table(n_categories: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Names and (median price, frequency, repeat, peak, amplitude) rows, shape (n, 5)."""
    names = [c[0] for c in _CATEGORIES[:n_categories]]
    rows = [c[1:] for c in _CATEGORIES[:n_categories]]
    extra = n_categories - len(rows)
    if extra > 0:
        width = len(str(n_categories))
        names += [f"category {i:0{width}d}" for i in range(_N_NAMED + 1, n_categories + 1)]
        median = np.exp(rng.uniform(np.log(3.0), np.log(300.0), extra))
        frequency = rng.uniform(0.4, 2.5, extra)
        repeat = rng.uniform(0.05, 1.0, extra)
        peak = rng.integers(0, 365, extra).astype(np.float64)
        amplitude = rng.uniform(0.0, 0.5, extra) * (rng.random(extra) < 0.4)
        rows += list(zip(median, frequency, repeat, peak, amplitude))
    return names, np.asarray(rows, dtype=np.float64).reshape(n_categories, 5)


def _catalogue(n_articles: int, n_categories: int, seed: int, days: int) -> _Catalogue:
    rng = _rng(seed, 1)
    names, table = _category_table(n_categories, rng)
    median, frequency, repeat, peak, amplitude = table.T
    # Every category holds at least one article; the rest go by an uneven category size.
    size = rng.gamma(2.0, 1.0, n_categories)
    category = np.concatenate(
        [
            np.arange(n_categories),
            rng.choice(n_categories, n_articles - n_categories, p=size / size.sum()),
        ]
    )
    category = rng.permutation(category).astype(np.int64)
    log_price = np.log(median[category]) + rng.normal(0.0, 0.6, n_articles)
    price = np.round(np.clip(np.exp(log_price), _MIN_PRICE, _MAX_PRICE), 2)
    rank = rng.permutation(n_articles) + 1.0
    popularity = frequency[category] / rank
    popularity /= popularity.sum()
    # Product families: runs of ~_FAMILY_SIZE articles of one category (in a random order).
    by_family = np.lexsort((rng.random(n_articles), category))
    cat_sorted = category[by_family]
    pos = np.arange(n_articles) - np.searchsorted(cat_sorted, cat_sorted)  # rank in category
    new_family = np.ones(n_articles, dtype=bool)
    new_family[1:] = (cat_sorted[1:] != cat_sorted[:-1]) | (pos[1:] % _FAMILY_SIZE == 0)
    family_start = np.append(np.flatnonzero(new_family), n_articles)
    launch = -rng.uniform(30.0, 3.0 * 365.0, n_articles)
    if n_articles >= 10:
        # New articles come from outside the top 10% so that there is always something on sale.
        tail = np.flatnonzero(rank > max(1.0, 0.1 * n_articles))
        new = rng.choice(tail, round(_NEW_ARTICLE_SHARE * n_articles), replace=False)
        launch[new] = rng.uniform(0.0, days, len(new))
    return _Catalogue(
        category,
        price,
        popularity,
        launch,
        by_family,
        family_start,
        names,
        frequency,
        repeat,
        peak,
        amplitude,
    )


def _segment_weights(cat: _Catalogue, n_segments: int, seed: int) -> np.ndarray:
    """Article weights per segment, shape (n_segments, n_articles)."""
    rng = _rng(seed, 2)
    n_categories = len(cat.names)
    n_preferred = max(1, round(n_categories / 6))
    boost = np.ones((n_segments, n_categories))
    for s in range(n_segments):
        boost[s, rng.choice(n_categories, n_preferred, replace=False)] = _CATEGORY_BOOST
    taste = rng.lognormal(0.0, _TASTE_SIGMA, (n_segments, len(cat.category)))
    # Independent of the global ranks: a segment's favourites are not the global best sellers.
    return cat.frequency[cat.category] * boost[:, cat.category] * taste


def _customers(n_customers: int, n_segments: int, seed: int, days: int) -> _Customers:
    rng = _rng(seed, 3)
    size = rng.gamma(3.0, 1.0, n_segments)
    segment = rng.choice(n_segments, n_customers, p=size / size.sum()).astype(np.int64)
    second = rng.choice(n_segments, n_customers, p=size / size.sum()).astype(np.int64)
    second_share = np.where(rng.random(n_customers) < 0.4, rng.uniform(0.1, 0.4, n_customers), 0)
    activity = rng.lognormal(0.0, _ACTIVITY_SIGMA, n_customers)
    # Half the customers are there from the start, the others join over the period; a third
    # of them stop (churn) somewhere after they joined.
    first = np.where(rng.random(n_customers) < 0.5, 0.0, rng.uniform(0.0, 0.9 * days, n_customers))
    churn = rng.random(n_customers) < 1 / 3
    last = np.where(churn, first + rng.uniform(0.3, 1.0, n_customers) * (days - first), days)
    return _Customers(segment, second, second_share, activity, first, last)


def _stacked_cdf(weights: np.ndarray) -> np.ndarray:
    """Row ``r``'s normalised CDF shifted by ``r``, flattened: one searchsorted serves all rows."""
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    cdf += np.arange(len(weights))[:, None]
    return cdf.ravel()


def _draw_rows(cdf: np.ndarray, rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """One index per entry of ``rows``, from that row's distribution in a ``_stacked_cdf``."""
    pos = np.searchsorted(cdf, rows + rng.random(len(rows)), side="right")
    return np.clip(pos - rows * n, 0, n - 1)


class _Sampler:
    """Article draws from numbered sources: rows ``0..n_segments-1`` are the segments' tastes,
    row ``n_segments`` the global popularity, ``n_segments + 1 + f`` product family ``f``
    (within a family by popularity)."""

    def __init__(self, cat: _Catalogue, segment_weights: np.ndarray) -> None:
        self.n_articles = len(cat.category)
        self.n_rows = len(segment_weights) + 1
        self.cdf = _stacked_cdf(np.vstack([segment_weights, cat.popularity[None, :]]))
        self.by_family = cat.by_family
        self.family_start = cat.family_start
        within = cat.popularity[cat.by_family] ** _FAMILY_POP_EXPONENT
        self.family_cum = np.concatenate([[0.0], np.cumsum(within)])

    def draw(self, source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.empty(len(source), dtype=np.int64)
        fam = source >= self.n_rows
        rows = np.flatnonzero(~fam)
        out[rows] = _draw_rows(self.cdf, source[rows], self.n_articles, rng)
        f = source[fam] - self.n_rows
        lo, hi = self.family_start[f], self.family_start[f + 1]
        c_lo, c_hi = self.family_cum[lo], self.family_cum[hi]
        pos = np.searchsorted(self.family_cum, c_lo + rng.random(len(f)) * (c_hi - c_lo), "right")
        out[fam] = self.by_family[np.clip(pos - 1, lo, hi - 1)]
        return out


def _fresh_articles(
    cat: _Catalogue,
    sampler: _Sampler,
    source: np.ndarray,
    day: np.ndarray,
    doy: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw from each line's source, rejecting articles not yet launched or off-season."""
    out = np.empty(len(source), dtype=np.int64)
    todo = np.arange(len(source))
    for _ in range(50):
        if len(todo) == 0:
            break
        pick = sampler.draw(source[todo], rng)
        c = cat.category[pick]
        amp = cat.amplitude[c]
        season = (1.0 + amp * np.cos(2 * np.pi * (doy[todo] - cat.peak[c]) / 365.25)) / (1 + amp)
        ok = (cat.launch[pick] <= day[todo]) & (rng.random(len(todo)) < season)
        out[todo[ok]] = pick[ok]
        todo = todo[~ok]
    if len(todo):
        # Rare leftovers (a taste concentrated on unlaunched articles): the best seller.
        on_sale = np.flatnonzero(cat.launch <= 0)
        out[todo] = on_sale[np.argmax(cat.popularity[on_sale])]
    return out


def _clashes(
    article: np.ndarray,
    idx: np.ndarray,
    line_cust: np.ndarray,
    line_order: np.ndarray,
    n_articles: int,
    keep: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Lines among ``idx`` (ascending, so in time order per customer) to redraw: a second line
    of the same article in one order, and, when ``keep`` is given, a line of an article the
    customer bought in an earlier order unless kept with probability ``keep[article]``."""
    a = article[idx]
    key = line_cust[idx] * n_articles + a
    srt = np.argsort(key, kind="stable")
    key, order = key[srt], line_order[idx][srt]
    same = key[1:] == key[:-1]  # not the customer's first line of this article
    bad = same & (order[1:] == order[:-1])
    if keep is not None:
        earlier = same & (order[1:] != order[:-1])
        bad |= earlier & (rng.random(len(earlier)) >= keep[a[srt[1:]]])
    return idx[srt[1:][bad]]


def _parse_start(start: Any) -> np.datetime64:
    if isinstance(start, (str, _dt.date, np.datetime64)):
        value: Any = start  # numpy's stubs take one of these kinds at a time
        try:
            return np.datetime64(value, "D")
        except ValueError as exc:
            raise ValueError(
                f"start must be a date such as '2025-01-01', got {start!r}: {exc}"
            ) from exc
    raise TypeError(
        f"start must be a date string, datetime.date or numpy.datetime64, "
        f"got {type(start).__name__} {start!r}"
    )


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def _check_world(
    n_articles: Any, n_categories: Any, seed: Any, days: Any, article_labels: Any, format: Any
) -> tuple[int, int, int, int, str, str]:
    n_articles = check_int("n_articles", n_articles, minimum=1)
    n_categories = check_int("n_categories", n_categories, minimum=1)
    if n_categories > n_articles:
        raise ValueError(
            f"n_categories must be <= n_articles ({n_articles}) so that every category holds "
            f"an article, got {n_categories}"
        )
    seed = _check_seed(seed)
    days = check_int("days", days, minimum=1)
    article_labels = check_choice("article_labels", article_labels, _LABELS)
    return n_articles, n_categories, seed, days, article_labels, check_format(format)


def _article_labels(n_articles: int, kind: str) -> pa.Array:
    ids = np.arange(1, n_articles + 1, dtype=np.int64)
    if kind == "int":
        return pa.array(ids)
    width = max(4, len(str(n_articles)))
    return pa.array([f"SKU-{i:0{width}d}" for i in ids.tolist()], type=pa.string())


def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    return values.take(pa.array(idx, type=pa.int64()))


def _day_timestamps(start: np.datetime64, days: np.ndarray) -> pa.Array:
    """Day offsets (float) as ``timestamp[us]`` at midnight + the fractional day."""
    micros = np.round(days * 86_400e6).astype(np.int64)
    stamps = start.astype("datetime64[us]") + micros.astype("timedelta64[us]")
    return pa.array(stamps, type=pa.timestamp("us"))


def make_articles(
    n_articles: int = 500,
    n_categories: int = 16,
    seed: int = 0,
    start: str | _dt.date | np.datetime64 = "2025-01-01",
    days: int = 365,
    article_labels: str = "int",
    format: str = "pandas",
) -> Any:
    """The catalogue behind :func:`make_purchases` with the same arguments.

    Parameters
    ----------
    n_articles, n_categories, seed, start, days, article_labels, format
        As in :func:`make_purchases`; the same values give the catalogue its lines were drawn
        from (it does not depend on the customers or the number of lines).

    Returns
    -------
    DataFrame
        One row per article: ``article_id`` (int64 from 1, or ``"SKU-0001"`` strings),
        ``category`` (string), ``price`` (float64, 2 to 2,000), ``launch_date`` (timestamp: the
        first day it is on sale; before ``start`` for most articles).

    Examples
    --------
    >>> from rusket.datasets import make_articles
    >>> articles = make_articles(n_articles=20, seed=3, article_labels="str")
    >>> articles["article_id"].iloc[0], articles.shape
    ('SKU-0001', (20, 4))
    """
    n_articles, n_categories, seed, days, article_labels, format = _check_world(
        n_articles, n_categories, seed, days, article_labels, format
    )
    day0 = _parse_start(start)
    cat = _catalogue(n_articles, n_categories, seed, days)
    table = pa.table(
        {
            "article_id": _article_labels(n_articles, article_labels),
            "category": _take(pa.array(cat.names, type=pa.string()), cat.category),
            "price": pa.array(cat.price, type=pa.float64()),
            "launch_date": _day_timestamps(day0, np.floor(cat.launch)),
        }
    )
    return convert(table, format)


def make_customers(
    n_customers: int = 2000,
    n_segments: int = 8,
    seed: int = 0,
    format: str = "pandas",
) -> Any:
    """The customers behind :func:`make_purchases` with their (hidden) taste segment.

    Real logs do not carry the segment; it is here to check what a model learnt (for example,
    colour a projection of the user factors by segment).

    Parameters
    ----------
    n_customers, n_segments, seed, format
        As in :func:`make_purchases`. Customers without any line (possible when ``n_lines`` is
        small) are listed too.

    Returns
    -------
    DataFrame
        ``customer_id`` (int64 from 1), ``segment`` (int64 from 0, the primary segment).

    Examples
    --------
    >>> from rusket.datasets import make_customers
    >>> make_customers(n_customers=5, n_segments=2, seed=1).columns.tolist()
    ['customer_id', 'segment']
    """
    n_customers = check_int("n_customers", n_customers, minimum=1)
    n_segments = check_int("n_segments", n_segments, minimum=1)
    seed = _check_seed(seed)
    check_format(format)
    cust = _customers(n_customers, n_segments, seed, days=365)  # the segments do not use days
    table = pa.table(
        {
            "customer_id": pa.array(np.arange(1, n_customers + 1, dtype=np.int64)),
            "segment": pa.array(cust.segment),
        }
    )
    return convert(table, format)


def make_purchases(
    n_customers: int = 2000,
    n_articles: int = 500,
    n_lines: int = 20_000,
    n_segments: int = 8,
    seed: int = 0,
    start: str | _dt.date | np.datetime64 = "2025-01-01",
    days: int = 365,
    *,
    n_categories: int = 16,
    repeat_share: float = 0.3,
    article_labels: str = "int",
    format: str = "pandas",
) -> Any:
    """Realistic synthetic order lines: segments, popularity skew, repeats, prices, time.

    See the module docstring for the generative model. The same arguments always give the same
    lines; the catalogue (:func:`make_articles`) and the customers (:func:`make_customers`)
    depend only on their own arguments and ``seed``.

    Parameters
    ----------
    n_customers : int, default 2000
        Customers (ids 1..n_customers). With ``n_lines >= n_customers`` every customer has at
        least one line; activity is heavy-tailed (most buy a handful of articles, a few many).
    n_articles : int, default 500
        Articles in the catalogue (ids 1..n_articles).
    n_lines : int, default 20_000
        Order lines, exactly.
    n_segments : int, default 8
        Customer segments with their own tastes (favourite categories and articles); at most
        ``n_articles``.
    seed : int, default 0
        Seed of the numpy generators.
    start : str, datetime.date or numpy.datetime64, default "2025-01-01"
        First day of the period.
    days : int, default 365
        Length of the period in days: order dates lie in ``[start, start + days)``.
    n_categories : int, default 16
        Article categories (the first 16 are named retail categories with their own price
        level, frequency, repeat propensity and season; more get generic names). At most
        ``n_articles``.
    repeat_share : float, default 0.3
        Probability that a line of a customer's second or later order rebuys an article from an
        earlier order (fresh draws can also hit an article bought before).
    article_labels : {"int", "str"}, default "int"
        ``article_id`` as int64 (1, 2, ...) or strings (``"SKU-0001"``).
    format : {"pandas", "polars", "arrow", "numpy", "spark"}, default "pandas"
        Output type (``"numpy"``: a dict of column arrays).

    Returns
    -------
    DataFrame
        One row per order line, sorted by ``order_date``: ``order_id`` (int64, numbered in
        time order), ``order_date`` (timestamp[us]), ``customer_id`` (int64), ``article_id``
        (int64 or string), ``category`` (string), ``quantity`` (int64 >= 1), ``sales_amount``
        (float64: price * quantity, less any discount).

    Examples
    --------
    >>> import rusket
    >>> from rusket.datasets import make_purchases
    >>> lines = make_purchases(n_customers=300, n_articles=100, n_lines=3_000, seed=7)
    >>> als = rusket.ALS(factors=8, iterations=5, confidence="log", regularization=1.0)
    >>> als = als.from_transactions(lines, "customer_id", "article_id", "sales_amount")
    >>> len(als.item_labels) <= 100
    True
    """
    n_customers = check_int("n_customers", n_customers, minimum=1)
    n_lines = check_int("n_lines", n_lines, minimum=1)
    n_articles, n_categories, seed, days, article_labels, format = _check_world(
        n_articles, n_categories, seed, days, article_labels, format
    )
    n_segments = check_int("n_segments", n_segments, minimum=1)
    if n_segments > n_articles:
        raise ValueError(
            f"n_segments must be <= n_articles ({n_articles}) for segments to have tastes of "
            f"their own, got {n_segments}"
        )
    repeat_share = check_float("repeat_share", repeat_share)
    if repeat_share > 1.0:
        raise ValueError(f"repeat_share must be a probability in [0, 1], got {repeat_share!r}")
    day0 = _parse_start(start)

    cat = _catalogue(n_articles, n_categories, seed, days)
    cust = _customers(n_customers, n_segments, seed, days)
    weights = _segment_weights(cat, n_segments, seed)
    sampler = _Sampler(cat, weights)
    rng = _rng(seed, 4)
    # Each customer's favourite product families, drawn from their primary segment's taste.
    family_weights = np.add.reduceat(weights[:, cat.by_family], cat.family_start[:-1], axis=1)
    n_families = family_weights.shape[1]
    favourite = _draw_rows(
        _stacked_cdf(family_weights),
        np.repeat(cust.segment, _N_FAVOURITE_FAMILIES),
        n_families,
        rng,
    ).reshape(n_customers, _N_FAVOURITE_FAMILIES)

    # Lines per customer: heavy-tailed activity, at least one line each when there are enough.
    p = cust.activity / cust.activity.sum()
    if n_lines >= n_customers:
        counts = 1 + rng.multinomial(n_lines - n_customers, p)
    else:
        counts = rng.multinomial(n_lines, p)
    line_cust = np.repeat(np.arange(n_customers), counts)
    cust_start = np.concatenate([[0], np.cumsum(counts)[:-1]])

    # Orders: a customer's lines split into orders of ~2 lines, dated over the active span.
    first_line = np.zeros(n_lines, dtype=bool)
    first_line[cust_start[counts > 0]] = True
    new_order = first_line | (rng.random(n_lines) < _NEW_ORDER_PROB)
    line_order = np.cumsum(new_order) - 1
    order_start = np.flatnonzero(new_order)
    order_cust = line_cust[order_start]
    span = cust.last[order_cust] - cust.first[order_cust]
    order_day = np.floor(cust.first[order_cust] + rng.random(len(order_start)) * span)
    seconds = rng.integers(8 * 3600, 21 * 3600, len(order_start))  # opening hours, 8:00-21:00
    order_time = np.minimum(order_day, days - 1) + seconds / 86_400
    # Orders are contiguous per customer: sorting by (customer, time) only permutes the times
    # within each customer, so a customer's k-th order is also their k-th in time.
    order_time = order_time[np.lexsort((order_time, order_cust))]
    line_day = order_time[line_order]
    doy = (day0.astype("datetime64[D]").astype(np.int64) + line_day) % 365.25

    # Fresh draws: the global popularity, a favourite family, or a segment's taste.
    u = rng.random(n_lines)
    segment = np.where(
        rng.random(n_lines) < cust.second_share[line_cust],
        cust.second[line_cust],
        cust.segment[line_cust],
    )
    family = favourite[line_cust, rng.integers(0, _N_FAVOURITE_FAMILIES, n_lines)]
    source = np.where(
        u < _GLOBAL_SHARE,
        n_segments,
        np.where(u < _GLOBAL_SHARE + _FAMILY_SHARE, n_segments + 1 + family, segment),
    )
    # In any order after a customer's first, a line rebuys with probability repeat_share.
    rebuy = (order_start[line_order] > cust_start[line_cust]) & (rng.random(n_lines) < repeat_share)
    article = _fresh_articles(cat, sampler, source, line_day, doy, rng)
    # A fresh line lists an article once per order, and hits an article the customer bought in
    # an earlier order only as often as its category is rebought (a second television is rare).
    fresh = np.flatnonzero(~rebuy)
    keep = cat.repeat[cat.category]
    for _ in range(8):
        redo = _clashes(article, fresh, line_cust, line_order, n_articles, keep, rng)
        if len(redo) == 0:
            break
        article[redo] = _fresh_articles(cat, sampler, source[redo], line_day[redo], doy[redo], rng)

    # Rebuys copy a fresh line of one of the customer's earlier orders, chosen with weight =
    # repeat propensity of its category (consumables come back, durables hardly).
    weight = np.where(rebuy, 0.0, cat.repeat[cat.category[article]] + 1e-3)
    cw = np.concatenate([[0.0], np.cumsum(weight)])
    idx = np.flatnonzero(rebuy)
    lo, hi = cust_start[line_cust[idx]], order_start[line_order[idx]]
    src = np.searchsorted(cw, cw[lo] + rng.random(len(idx)) * (cw[hi] - cw[lo]), "right") - 1
    article[idx] = article[np.clip(src, lo, hi - 1)]
    # Two rebuys of one order may copy the same article: draw the second afresh.
    every = np.arange(n_lines)
    for _ in range(8):
        redo = _clashes(article, every, line_cust, line_order, n_articles, None, rng)
        if len(redo) == 0:
            break
        article[redo] = _fresh_articles(cat, sampler, source[redo], line_day[redo], doy[redo], rng)

    # Quantities: small integers, larger for cheap articles; some lines are discounted.
    price = cat.price[article]
    quantity = 1 + rng.poisson(1.5 / (1.0 + price / 10.0))
    discount = np.where(rng.random(n_lines) < 0.15, rng.choice([0.1, 0.2, 0.3, 0.5], n_lines), 0.0)
    amount = np.round(price * quantity * (1.0 - discount), 2)

    # Order ids in time order; lines sorted by date (ties: by order, then as drawn).
    order_rank = np.empty(len(order_start), dtype=np.int64)
    order_rank[np.argsort(order_time, kind="stable")] = np.arange(1, len(order_start) + 1)
    line_order_id = order_rank[line_order]
    perm = np.argsort(line_order_id, kind="stable")
    table = pa.table(
        {
            "order_id": pa.array(line_order_id[perm]),
            "order_date": _day_timestamps(day0, line_day[perm]),
            "customer_id": pa.array(line_cust[perm].astype(np.int64) + 1),
            "article_id": _take(_article_labels(n_articles, article_labels), article[perm]),
            "category": _take(pa.array(cat.names, type=pa.string()), cat.category[article[perm]]),
            "quantity": pa.array(quantity[perm].astype(np.int64)),
            "sales_amount": pa.array(amount[perm], type=pa.float64()),
        }
    )
    return convert(table, format)
