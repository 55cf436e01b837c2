"""project() / Projection: coordinates, exports and real plotly figures."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from rusket.pca import PCA, Projection, project

go = pytest.importorskip("plotly.graph_objects")


def vectors(n: int = 300, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * np.linspace(3, 1, d)).astype(np.float32)


def names(n: int) -> list[str]:
    return [f"sku-{i}" for i in range(n)]


def test_project_holds_coordinates_labels_and_the_fitted_pca() -> None:
    v = vectors()
    p = project(v, names(300))
    assert isinstance(p, Projection)
    assert isinstance(p.pca, PCA)
    assert p.coordinates.shape == (300, 3)
    assert p.n_components == 3 and len(p) == 300
    assert p.labels.tolist() == names(300)
    # normalize=True: PCA of the unit-length rows.
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    ref = PCA(3).fit(unit)
    np.testing.assert_allclose(p.coordinates, ref.transform(unit), atol=1e-5)
    np.testing.assert_allclose(p.explained_variance_ratio_, ref.explained_variance_ratio_)
    assert "300 items" in repr(p)


def test_normalize_false_and_zero_rows() -> None:
    v = vectors(100, 8).astype(np.float64)
    raw = project(v, n_components=2, normalize=False)
    np.testing.assert_allclose(raw.coordinates, PCA(2).fit_transform(v))
    v[5] = 0.0
    p = project(v * 7.0, n_components=2)  # the scale goes away, the zero row stays zero
    assert np.isfinite(p.coordinates).all()
    q = project(v, n_components=2)
    np.testing.assert_allclose(p.coordinates, q.coordinates, atol=1e-10)
    np.testing.assert_allclose(p.coordinates[5], -p.pca.mean_ @ p.pca.components_.T, atol=1e-12)
    assert p.labels.tolist() == list(range(100))


def test_3d_figure_has_one_point_per_vector_and_labels_on_hover() -> None:
    p = project(vectors(), names(300))
    fig = p.plot(title="Latent Item Space")
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 1
    trace = fig.data[0]
    assert isinstance(trace, go.Scatter3d)
    assert len(trace.x) == len(trace.y) == len(trace.z) == 300
    assert list(trace.text) == names(300)
    assert "item_id=%{text}" in trace.hovertemplate
    np.testing.assert_allclose(trace.x, p.coordinates[:, 0])
    assert fig.layout.title.text == "Latent Item Space"
    assert fig.layout.scene.xaxis.title.text.startswith("PC1 (")
    assert fig.to_html(include_plotlyjs=False)  # serialises


def test_2d_figure() -> None:
    p = project(vectors(), names(300), n_components=2, which="users")
    fig = p.plot()
    trace = fig.data[0]
    assert isinstance(trace, go.Scatter)
    assert len(trace.x) == 300
    assert "user_id=%{text}" in trace.hovertemplate
    assert fig.layout.xaxis.title.text.startswith("PC1 (")
    assert "User space" in fig.layout.title.text


def test_max_points_samples_the_figure_only() -> None:
    p = project(vectors(2000), names(2000), max_points=150, random_state=4)
    fig = p.plot()
    trace = fig.data[0]
    assert len(trace.x) == 150
    shown = set(trace.text)
    assert len(shown) == 150 and shown <= set(names(2000))
    assert "150 of 2,000" in fig.layout.title.text
    # Seeded: the same sample every time; the exports keep every point.
    assert list(
        project(vectors(2000), names(2000), max_points=150, random_state=4).plot().data[0].text
    ) == list(trace.text)
    assert len(p.to_pandas()) == 2000
    assert len(p.plot(max_points=None).data[0].x) == 150  # None means "the projection's"
    assert len(p.plot(max_points=5000).data[0].x) == 2000
    assert len(project(vectors(2000), max_points=None).plot().data[0].x) == 2000


def test_color_and_hover() -> None:
    v = vectors(60)
    labels = names(60)
    p = project(v, labels)
    numeric = p.plot(color=np.arange(60.0))
    assert len(numeric.data) == 1
    np.testing.assert_allclose(numeric.data[0].marker.color, np.arange(60.0))
    cats = ["shoes" if i % 3 else "bags" for i in range(60)]
    by_cat = p.plot(color=cats)
    assert sorted(t.name for t in by_cat.data) == ["bags", "shoes"]
    assert sum(len(t.x) for t in by_cat.data) == 60
    by_dict = p.plot(color={lab: c for lab, c in zip(labels, cats, strict=True)})
    assert sorted(t.name for t in by_dict.data) == ["bags", "shoes"]
    hov = p.plot(hover=[f"Product {i}" for i in range(60)])
    assert hov.data[0].customdata[7] == "Product 7"
    assert "%{customdata}" in hov.data[0].hovertemplate
    with pytest.raises(ValueError, match="color"):
        p.plot(color=[1, 2, 3])


def test_exports_to_pandas_and_polars() -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    p = project(vectors(50), names(50))
    df = p.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["item_id", "pc1", "pc2", "pc3"]
    assert df["item_id"].tolist() == names(50)
    np.testing.assert_allclose(df[["pc1", "pc2", "pc3"]].to_numpy(), p.coordinates)
    pdf = p.to_polars()
    assert isinstance(pdf, pl.DataFrame)
    assert pdf.columns == ["item_id", "pc1", "pc2", "pc3"]
    users = project(vectors(50), list(range(100, 150)), n_components=2, which="users")
    assert users.to_polars().columns == ["user_id", "pc1", "pc2"]
    assert users.to_pandas()["user_id"].tolist() == list(range(100, 150))


def test_bad_arguments() -> None:
    v = vectors(40)
    with pytest.raises(ValueError, match="labels"):
        project(v, names(39))
    with pytest.raises(ValueError, match="which"):
        project(v, which="products")
    with pytest.raises(ValueError, match="max_points"):
        project(v, max_points=0)
    with pytest.raises(ValueError, match="n_components"):
        project(v, n_components=0)
    with pytest.raises(ValueError, match="2 or 3 components"):
        project(v, n_components=4).plot()
    with pytest.raises(ValueError, match="vectors"):
        project(np.ones(5))


def test_missing_plotly_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    p = project(vectors(20), n_components=2)
    for mod in [m for m in sys.modules if m == "plotly" or m.startswith("plotly.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(ImportError, match=r"rusket\[plot\]"):
        p.plot()
