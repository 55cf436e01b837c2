"""Factor exports: one exporter, every format, the same rows; vector stores take them as-is."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

import rusket


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(5)
    t = pa.table(
        {
            "customer_id": [f"c{u}" for u in rng.integers(0, 50, 600)],
            "article_id": rng.integers(100, 160, 600),
            "sales_amount": rng.exponential(10, 600),
        }
    )
    als = rusket.ALS(factors=6, iterations=3).from_transactions(
        t, "customer_id", "article_id", "sales_amount"
    )
    # One item whose vector is exactly zero: normalisation must keep it zero, not NaN.
    items = als.item_factors.copy()
    items[0] = 0.0
    als._state = dataclasses.replace(als._fitted_state(), item_factors=items)
    return als


def _vectors(frame_vectors) -> np.ndarray:
    return np.vstack([np.asarray(v, dtype=np.float32) for v in frame_vectors])


@pytest.mark.parametrize("normalize", [False, True])
def test_every_format_holds_the_same_rows(model, normalize):
    pl = pytest.importorskip("polars")
    arrow = model.export_item_factors(normalize=normalize, format="arrow")
    assert arrow.schema.field("item_id").type == pa.int64()
    assert arrow.schema.field("vector").type == pa.list_(pa.float32(), 6)
    want = model.item_factors
    if normalize:
        norms = np.linalg.norm(want, axis=1, keepdims=True)
        want = np.divide(want, norms, out=np.zeros_like(want), where=norms > 0)
    np.testing.assert_allclose(_vectors(arrow["vector"].to_pylist()), want, rtol=1e-6)
    pdf = model.export_item_factors(normalize=normalize, format="pandas")
    assert list(pdf.columns) == ["item_id", "vector"]
    np.testing.assert_array_equal(pdf["item_id"], model.item_labels)
    np.testing.assert_allclose(_vectors(pdf["vector"]), want, rtol=1e-6)
    pol = model.export_item_factors(normalize=normalize, format="polars")
    assert isinstance(pol, pl.DataFrame) and pol.columns == ["item_id", "vector"]
    np.testing.assert_allclose(_vectors(pol["vector"].to_list()), want, rtol=1e-6)
    npy = model.export_item_factors(normalize=normalize, format="numpy")
    assert npy["vector"].shape == (len(model.item_labels), 6)
    np.testing.assert_allclose(npy["vector"], want, rtol=1e-6)
    assert model.export_factors(normalize=normalize, format="arrow").equals(arrow)


def test_normalized_vectors_have_unit_norm_and_zero_stays_zero(model):
    v = model.export_user_factors(normalize=True, format="numpy")["vector"]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    items = model.export_item_factors(normalize=True, format="numpy")["vector"]
    assert not np.isnan(items).any()
    assert not items[0].any()
    np.testing.assert_allclose(np.linalg.norm(items[1:], axis=1), 1.0, rtol=1e-5)


def test_user_export_keeps_string_labels(model):
    df = model.export_user_factors(format="pandas")
    assert df["user_id"].tolist() == model.user_labels.tolist()
    assert model.export_user_factors(format="arrow").schema.field("user_id").type in (
        pa.string(),
        pa.large_string(),
    )


def test_bad_format_and_normalize(model):
    with pytest.raises(ValueError, match="format must be one of"):
        model.export_user_factors(format="csv")
    with pytest.raises(TypeError, match="normalize"):
        model.export_item_factors(normalize="yes")


def test_spark_export_schema_and_values(spark, model):
    from pyspark.sql import types as T

    sdf = model.export_item_factors(normalize=True, format="spark")
    assert sdf.schema["item_id"].dataType == T.LongType()
    assert sdf.schema["vector"].dataType == T.ArrayType(T.FloatType(), True)
    back = sdf.toArrow()
    want = model.export_item_factors(normalize=True, format="numpy")["vector"]
    np.testing.assert_allclose(_vectors(back["vector"].to_pylist()), want, rtol=1e-6)
    users = model.export_user_factors(format="spark")
    assert users.count() == len(model.user_labels)


def test_lancedb_takes_the_arrow_export(tmp_path, model):
    lancedb = pytest.importorskip("lancedb")
    db = lancedb.connect(str(tmp_path / "lance"))
    table = db.create_table("items", model.export_item_factors(normalize=True, format="arrow"))
    assert table.count_rows() == len(model.item_labels)
    query = model.export_item_factors(normalize=True, format="numpy")["vector"][3]
    hits = table.search(query).metric("cosine").limit(3).to_arrow()
    assert hits["item_id"][0].as_py() == model.item_labels[3]


def test_faiss_inner_product_search_matches_similar_items(model):
    faiss = pytest.importorskip("faiss")
    exp = model.export_item_factors(normalize=True, format="numpy")
    index = faiss.IndexFlatIP(exp["vector"].shape[1])
    index.add(exp["vector"])
    _, found = index.search(exp["vector"][5:6], 4)
    faiss_labels = [exp["item_id"][i] for i in found[0] if i != 5][:3]
    ours, _ = model.similar_items(exp["item_id"][5], n=3)
    assert faiss_labels == ours.tolist()
