"""``potential_tiers``: equal to Spark's ``percent_rank`` window row for row, on every format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from rusket.tiers import potential_tiers


def _recommendations() -> pd.DataFrame:
    """Tied scores (one decimal), articles of 1 to 12 customers (several of one), a fully tied
    article, a missing article id, integer and negative scores, -0.0 next to 0.0."""
    rng = np.random.default_rng(3)
    sizes = [1, 1, 1, 2, 2, 3, 5, 7, 8, 12, 12, 4]
    item_ids = [f"a{i:02d}" for i, n in enumerate(sizes) for _ in range(n)]
    scores = rng.integers(-3, 8, size=len(item_ids)) / 10.0
    frame = pd.DataFrame(
        {
            "row": np.arange(len(item_ids) + 6),
            "user_id": np.arange(len(item_ids) + 6) % 17,
            "item_id": [*item_ids, "tied", "tied", "tied", "zero", "zero", None],
            "score": [*scores, 0.5, 0.5, 0.5, -0.0, 0.0, 0.25],
        }
    )
    return frame


def _spark_window(sdf, cuts=(0.2, 0.6)):
    """The seed cookbook's window, written out by hand."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("item_id").orderBy(F.col("score").desc())
    return sdf.withColumn("pct", F.percent_rank().over(w)).withColumn(
        "expected",
        F.when(F.col("pct") <= cuts[0], "High")
        .when(F.col("pct") <= cuts[1], "Medium")
        .otherwise("Low"),
    )


@pytest.fixture(scope="module")
def expected(spark) -> tuple[pd.DataFrame, object]:
    """The Spark frame of the recommendations and the window's answer, ordered by ``row``."""
    recs = _recommendations()
    sdf = spark.createDataFrame(recs)
    want = _spark_window(sdf).toPandas().sort_values("row").reset_index(drop=True)
    return want, sdf


def _assert_equal_to_window(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.sort_values("row").reset_index(drop=True)
    assert got["row"].tolist() == want["row"].tolist()
    assert got["percent_rank"].dtype == np.float64
    # The same doubles, not just close ones: both divide (rank - 1) by (n - 1).
    np.testing.assert_array_equal(got["percent_rank"].to_numpy(), want["pct"].to_numpy())
    assert got["potential"].tolist() == want["expected"].tolist()


@pytest.mark.spark
def test_pandas_equals_spark_window(expected):
    want, _ = expected
    recs = _recommendations()
    got = potential_tiers(recs)
    assert list(got.columns) == [*recs.columns, "percent_rank", "potential"]
    assert got["row"].tolist() == recs["row"].tolist()  # row order kept
    _assert_equal_to_window(got, want)


@pytest.mark.spark
def test_polars_equals_spark_window(expected):
    want, _ = expected
    recs = pl.from_pandas(_recommendations())
    got = potential_tiers(recs)
    assert isinstance(got, pl.DataFrame)
    assert got.schema["percent_rank"] == pl.Float64 and got.schema["potential"] == pl.String
    _assert_equal_to_window(got.to_pandas(), want)
    lazy = potential_tiers(recs.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(got)


@pytest.mark.spark
def test_arrow_equals_spark_window(expected):
    want, _ = expected
    table = pa.Table.from_pandas(_recommendations(), preserve_index=False)
    got = potential_tiers(table)
    assert isinstance(got, pa.Table)
    assert got.schema.field("percent_rank").type == pa.float64()
    assert got.schema.field("potential").type == pa.string()
    assert got.select(table.column_names).equals(table)  # input columns and types untouched
    _assert_equal_to_window(got.to_pandas(), want)


@pytest.mark.spark
def test_spark_is_the_window(expected):
    want, sdf = expected
    got = potential_tiers(sdf)
    assert got.columns == [*sdf.columns, "percent_rank", "potential"]
    types = dict(got.dtypes)
    assert types["percent_rank"] == "double" and types["potential"] == "string"
    _assert_equal_to_window(got.toPandas(), want)
    assert sdf.columns == ["row", "user_id", "item_id", "score"]  # input untouched


@pytest.mark.spark
def test_spark_other_cuts_and_bad_scores(spark, expected):
    _, sdf = expected
    got = potential_tiers(sdf, cuts=(0.2, 0.5)).toPandas()
    window = _spark_window(sdf, cuts=(0.2, 0.5)).toPandas().sort_values("row")
    _assert_equal_to_window(got, window.reset_index(drop=True))
    with pytest.raises(KeyError, match=r"'points'.*available columns"):
        potential_tiers(sdf, score_col="points")
    with pytest.raises(TypeError, match="score_col 'item_id' must be a numeric column"):
        potential_tiers(sdf, by="user_id", score_col="item_id")
    nan = spark.createDataFrame(
        pd.DataFrame({"item_id": [1, 1, 2], "score": [0.5, np.nan, np.nan]})
    )
    with pytest.raises(ValueError, match="score_col 'score' holds 2 NaN or missing values"):
        potential_tiers(nan)
    null = spark.createDataFrame([(1, 0.5), (1, None)], "item_id int, score double")
    with pytest.raises(ValueError, match="holds 1 NaN or missing value,"):
        potential_tiers(null)


def test_hand_computed():
    recs = pd.DataFrame(
        {
            "user_id": [1, 2, 3, 4, 5, 1, 2],
            "item_id": [10, 10, 10, 10, 10, 20, 30],
            "score": [0.05, 0.9, 0.5, 0.9, 0.1, 0.3, 7.0],
        }
    )
    # item 10, scores descending: 0.9, 0.9 (rank 1), 0.5 (rank 3), 0.1 (4), 0.05 (5) of 5 rows.
    pct = [1.0, 0.0, 0.5, 0.0, 0.75, 0.0, 0.0]
    tiers = ["Low", "High", "Medium", "High", "Low", "High", "High"]
    got = potential_tiers(recs)
    assert got["percent_rank"].tolist() == pct
    assert got["potential"].tolist() == tiers
    got_pl = potential_tiers(pl.from_pandas(recs))
    assert got_pl["percent_rank"].to_list() == pct
    assert got_pl["potential"].to_list() == tiers
    # By customer instead, four tiers from three cuts; a cut equal to a percent rank includes it.
    by_user = potential_tiers(recs, by="user_id", cuts=(0.0, 0.5, 0.9), labels=("A", "B", "C", "D"))
    # customer 1: 0.3 then 0.05; customer 2: 7.0 then 0.9; the others have one row.
    assert by_user["percent_rank"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert by_user["potential"].tolist() == ["D", "D", "A", "A", "A", "A", "A"]
    at_cut = potential_tiers(recs, cuts=(0.2, 0.5))
    assert at_cut["potential"].tolist() == ["Low", "High", "Medium", "High", "Low", "High", "High"]


def test_several_keys_integer_scores_and_empty():
    recs = pd.DataFrame(
        {
            "shop": ["x", "x", "x", "y", "y"],
            "item_id": [1, 1, 1, 1, 1],
            "score": [3, 1, 3, 2, 2],
        }
    )
    got = potential_tiers(recs, by=["shop", "item_id"], cuts=(0.5,), labels=("top", "rest"))
    assert got["percent_rank"].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert got["potential"].tolist() == ["top", "rest", "top", "top", "top"]
    got_pl = potential_tiers(
        pl.from_pandas(recs), by=["shop", "item_id"], cuts=(0.5,), labels=("top", "rest")
    )
    assert got_pl.to_pandas().equals(got)
    empty = potential_tiers(recs.iloc[:0])
    assert len(empty) == 0 and list(empty.columns)[-2:] == ["percent_rank", "potential"]
    assert len(potential_tiers(pl.from_pandas(recs).clear())) == 0


def test_existing_columns_are_replaced():
    first = potential_tiers(_recommendations())
    again = potential_tiers(first, cuts=(0.2, 0.5))
    assert list(again.columns) == list(first.columns)
    expected = np.where(
        first["percent_rank"] <= 0.2,
        "High",
        np.where(first["percent_rank"] <= 0.5, "Medium", "Low"),
    )
    assert again["potential"].tolist() == expected.tolist()


def test_input_not_modified():
    recs = _recommendations()
    before = recs.copy()
    potential_tiers(recs)
    pd.testing.assert_frame_equal(recs, before)
    frame = pl.from_pandas(recs)
    clone = frame.clone()
    potential_tiers(frame)
    assert frame.equals(clone)
    table = pa.Table.from_pandas(recs, preserve_index=False)
    potential_tiers(table)
    assert table.equals(pa.Table.from_pandas(before, preserve_index=False))


FORMATS = {
    "pandas": lambda df: df,
    "polars": pl.from_pandas,
    "polars-lazy": lambda df: pl.from_pandas(df).lazy(),
    "arrow": lambda df: pa.Table.from_pandas(df, preserve_index=False),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cuts": (0.6, 0.2)}, ValueError, "cuts must be strictly increasing"),
        ({"cuts": (0.2, 0.2)}, ValueError, "cuts must be strictly increasing"),
        ({"cuts": (-0.1, 0.6)}, ValueError, r"cuts must lie within \[0, 1\]"),
        ({"cuts": (0.2, 1.5)}, ValueError, r"cuts must lie within \[0, 1\]"),
        ({"cuts": (0.2, float("nan"))}, ValueError, r"cuts must lie within \[0, 1\]"),
        ({"cuts": (), "labels": ("All",)}, ValueError, "cuts must hold at least one"),
        ({"cuts": 0.2}, TypeError, "cuts must be a sequence of numbers"),
        ({"cuts": ("0.2", "0.6")}, TypeError, "cuts must be a sequence of numbers"),
        ({"labels": ("High", "Low")}, ValueError, r"labels must hold len\(cuts\) \+ 1 = 3"),
        ({"cuts": (0.5,)}, ValueError, r"labels must hold len\(cuts\) \+ 1 = 2 names"),
        ({"labels": "HML"}, TypeError, "labels must be a sequence of strings"),
        ({"labels": ("High", 2, "Low")}, TypeError, "labels must all be strings"),
        ({"by": "article"}, KeyError, r"'article' not in recommendations; available columns"),
        ({"by": ["shop", "item"]}, KeyError, r"columns 'shop', 'item' not in recommendations"),
        ({"score_col": "points"}, KeyError, r"'points' not in .*'item_id', 'score'"),
        ({"by": []}, TypeError, "by must be a column name or a non-empty list"),
        ({"by": ["item_id", "item_id"]}, ValueError, "by names a column twice"),
        ({"score_col": None}, TypeError, "score_col must be a column name"),
        ({"score_col": "name"}, TypeError, "score_col 'name' must be a numeric column"),
        ({"score_col": "flag"}, TypeError, "score_col 'flag' must be a numeric column"),
    ],
)
def test_bad_input(fmt, kwargs, error, match):
    recs = pd.DataFrame(
        {
            "item_id": [1, 1, 2],
            "score": [0.5, 0.25, 0.1],
            "name": ["a", "b", "c"],
            "flag": [True, False, True],
        }
    )
    with pytest.raises(error, match=match):
        potential_tiers(FORMATS[fmt](recs), **kwargs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_scores(fmt):
    recs = pd.DataFrame({"item_id": [1, 1, 2, 2], "score": [0.5, np.nan, np.nan, 0.1]})
    with pytest.raises(ValueError, match="score_col 'score' holds 2 NaN or missing values"):
        potential_tiers(FORMATS[fmt](recs))
    if fmt.startswith("polars"):  # polars tells NaN and null apart: both are counted
        frame = pl.DataFrame({"item_id": [1, 1, 2], "score": [float("nan"), None, 0.2]})
        with pytest.raises(ValueError, match="holds 2 NaN or missing values"):
            potential_tiers(frame.lazy() if fmt == "polars-lazy" else frame)


def test_unsupported_objects():
    with pytest.raises(TypeError, match="must be a pandas, polars"):
        potential_tiers({"item_id": [1], "score": [0.5]})
    batch = pa.RecordBatch.from_pydict({"item_id": [1], "score": [0.5]})
    with pytest.raises(TypeError, match="pa.Table.from_batches"):
        potential_tiers(batch)
