"""rusket.PCA against scikit-learn's PCA, its estimator protocol, and its input checks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rusket import _core
from rusket.pca import PCA, NotFittedError

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.decomposition import PCA as SkPCA  # noqa: E402
from sklearn.exceptions import NotFittedError as SkNotFittedError  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

EXACT = ["auto", "full", "covariance_eigh"]


def random_data(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Gaussian data with distinct variances per feature and an offset (centring matters)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.linspace(1.0, 4.0, d) + rng.normal(size=d) * 10


def low_rank(n: int, d: int, rank: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, rank)) * np.arange(rank, 0, -1) * 2.0
    return a @ rng.normal(size=(rank, d)) + rng.normal(size=d) * 5


# name -> (X, number of components with well separated, non-zero variances)
DATASETS = {
    "random": (random_data(300, 12), 12),
    "low_rank": (low_rank(400, 30, 5), 5),
    "tall": (random_data(5000, 16, seed=1), 16),
    "wide": (random_data(40, 120, seed=2), 39),
}


def assert_matches_sklearn(ours: PCA, ref: SkPCA, k: int) -> None:
    """Same numbers as scikit-learn on the first ``k`` (well-determined) components."""
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-10, atol=1e-10)
    ev, ev_ref = ours.explained_variance_[:k], ref.explained_variance_[:k]
    np.testing.assert_allclose(ev, ev_ref, rtol=1e-5)
    np.testing.assert_allclose(
        ours.explained_variance_ratio_[:k], ref.explained_variance_ratio_[:k], rtol=1e-5
    )
    np.testing.assert_allclose(ours.singular_values_[:k], ref.singular_values_[:k], rtol=1e-5)
    # Same signs as scikit-learn, not just the same axes.
    np.testing.assert_allclose(ours.components_[:k], ref.components_[:k], atol=1e-6)


@pytest.mark.parametrize("name", list(DATASETS))
@pytest.mark.parametrize("solver", EXACT)
def test_exact_solvers_match_sklearn(name: str, solver: str) -> None:
    X, good = DATASETS[name]
    k = min(5, good)
    ours = PCA(n_components=k, svd_solver=solver).fit(X)
    ref = SkPCA(n_components=k, svd_solver="full").fit(X)
    assert ours.n_components_ == ref.n_components_ == k
    assert ours.n_features_in_ == X.shape[1]
    assert ours.svd_solver_ == "covariance_eigh"
    assert_matches_sklearn(ours, ref, k)
    np.testing.assert_allclose(
        ours.noise_variance_, ref.noise_variance_, rtol=1e-6, atol=1e-9 * ref.explained_variance_[0]
    )
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), atol=1e-6 * np.abs(X).max())


@pytest.mark.parametrize("name", list(DATASETS))
def test_all_components_match_sklearn(name: str) -> None:
    X, good = DATASETS[name]
    ours = PCA(n_components=None).fit(X)
    ref = SkPCA(n_components=None, svd_solver="full").fit(X)
    assert ours.n_components_ == ref.n_components_ == min(X.shape)
    assert_matches_sklearn(ours, ref, good)
    # Variances beyond the rank are ~0 for both.
    scale = ref.explained_variance_[0]
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, atol=1e-9 * scale)


@pytest.mark.parametrize("name", list(DATASETS))
def test_ratios_of_a_full_decomposition_sum_to_one(name: str) -> None:
    X, _ = DATASETS[name]
    pca = PCA(n_components=None).fit(X)
    assert pca.explained_variance_ratio_.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(pca.explained_variance_) <= 0)


@pytest.mark.parametrize("name", ["random", "tall", "wide"])
def test_reconstruction_at_full_rank(name: str) -> None:
    X, _ = DATASETS[name]
    for whiten in (False, True):
        pca = PCA(n_components=None, whiten=whiten).fit(X)
        np.testing.assert_allclose(pca.inverse_transform(pca.transform(X)), X, atol=1e-8)


def test_randomized_matches_full_on_low_rank_data() -> None:
    X = low_rank(3000, 80, 6, seed=4)
    full = PCA(n_components=6, svd_solver="full").fit(X)
    rnd = PCA(n_components=6, svd_solver="randomized", random_state=0).fit(X)
    assert rnd.svd_solver_ == "randomized"
    np.testing.assert_allclose(
        rnd.explained_variance_ratio_, full.explained_variance_ratio_, rtol=1e-8
    )
    np.testing.assert_allclose(rnd.explained_variance_, full.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(rnd.components_, full.components_, atol=1e-8)
    # All the variance is in 6 components, so the ratios add up to 1 in randomized mode too.
    assert rnd.explained_variance_ratio_.sum() == pytest.approx(1.0, abs=1e-8)
    assert_matches_sklearn(rnd, SkPCA(n_components=6, svd_solver="full").fit(X), 6)


def test_randomized_ratio_is_relative_to_the_total_variance() -> None:
    X = random_data(400, 60, seed=5)
    rnd = PCA(n_components=3, svd_solver="randomized", random_state=1).fit(X)
    total = X.var(axis=0, ddof=1).sum()
    np.testing.assert_allclose(rnd.explained_variance_ratio_, rnd.explained_variance_ / total)
    assert rnd.explained_variance_ratio_.sum() < 0.5
    ref = SkPCA(n_components=3, svd_solver="randomized", random_state=1).fit(X)
    np.testing.assert_allclose(rnd.noise_variance_, ref.noise_variance_, rtol=1e-3)
    np.testing.assert_allclose(rnd.explained_variance_, ref.explained_variance_, rtol=1e-3)


def test_randomized_is_deterministic_with_random_state() -> None:
    X = random_data(500, 70, seed=6)
    a = PCA(n_components=4, svd_solver="randomized", random_state=7).fit(X)
    b = PCA(n_components=4, svd_solver="randomized", random_state=7).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.explained_variance_, b.explained_variance_)
    rs = PCA(n_components=4, svd_solver="randomized", random_state=np.random.RandomState(3))
    gen = PCA(n_components=4, svd_solver="randomized", random_state=np.random.default_rng(3))
    assert rs.fit(X).n_components_ == gen.fit(X).n_components_ == 4


@pytest.mark.parametrize("solver", ["covariance_eigh", "randomized"])
def test_results_do_not_depend_on_the_thread_count(solver: str) -> None:
    X = random_data(20_000, 24, seed=8).astype(np.float32)
    fits = [
        PCA(n_components=5, svd_solver=solver, random_state=0, num_threads=t).fit(X)
        for t in (1, 2, 3)
    ]
    for other in fits[1:]:
        for attr in ("components_", "explained_variance_", "mean_", "singular_values_"):
            np.testing.assert_array_equal(getattr(fits[0], attr), getattr(other, attr))


def test_auto_picks_covariance_for_tall_and_randomized_for_wide() -> None:
    assert PCA(3).fit(random_data(2000, 20)).svd_solver_ == "covariance_eigh"
    assert PCA(3).fit(random_data(600, 1200, seed=3)).svd_solver_ == "randomized"
    assert PCA(None).fit(random_data(600, 1200, seed=3)).svd_solver_ == "covariance_eigh"
    assert PCA(0.5).fit(random_data(600, 1200, seed=3)).svd_solver_ == "covariance_eigh"


@pytest.mark.parametrize("share", [0.3, 0.5, 0.8, 0.95, 0.999])
def test_float_n_components_keeps_that_share_of_variance(share: float) -> None:
    X = DATASETS["random"][0]
    ours = PCA(n_components=share).fit(X)
    ref = SkPCA(n_components=share, svd_solver="full").fit(X)
    assert ours.n_components_ == ref.n_components_
    assert ours.explained_variance_ratio_.sum() > share
    assert ours.explained_variance_ratio_[:-1].sum() <= share
    np.testing.assert_allclose(ours.noise_variance_, ref.noise_variance_, rtol=1e-6)


def test_whiten_matches_sklearn_and_gives_unit_variance() -> None:
    X = DATASETS["random"][0]
    ours = PCA(n_components=4, whiten=True).fit(X)
    ref = SkPCA(n_components=4, whiten=True, svd_solver="full").fit(X)
    Z = ours.transform(X)
    np.testing.assert_allclose(Z, ref.transform(X), atol=1e-8)
    np.testing.assert_allclose(Z.var(axis=0, ddof=1), 1.0, rtol=1e-10)
    np.testing.assert_allclose(ours.inverse_transform(Z), ref.inverse_transform(Z), atol=1e-8)


def test_fit_transform_equals_fit_then_transform() -> None:
    X = DATASETS["tall"][0]
    a = PCA(3).fit_transform(X)
    b = PCA(3).fit(X).transform(X)
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, SkPCA(3).fit_transform(X), atol=1e-8)


def test_float32_in_float32_out() -> None:
    X64 = DATASETS["tall"][0]
    X32 = X64.astype(np.float32)
    p32 = PCA(4).fit(X32)
    for attr in ("components_", "explained_variance_", "explained_variance_ratio_", "mean_"):
        assert getattr(p32, attr).dtype == np.float32
    assert p32.transform(X32).dtype == np.float32
    p64 = PCA(4).fit(X32.astype(np.float64))  # the same numbers, computed in f64 both times
    np.testing.assert_allclose(p32.components_, p64.components_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(p32.explained_variance_, p64.explained_variance_, rtol=1e-6)
    ref = SkPCA(4).fit(X32)
    np.testing.assert_allclose(p32.explained_variance_, ref.explained_variance_, rtol=1e-3)
    np.testing.assert_allclose(p32.components_, ref.components_, atol=1e-3)


def test_integer_and_list_input_are_read_as_float64() -> None:
    X = np.arange(40).reshape(10, 4) ** 2
    pca = PCA(2).fit(X.tolist())
    assert pca.components_.dtype == np.float64
    np.testing.assert_allclose(pca.explained_variance_, SkPCA(2).fit(X).explained_variance_)


# -- the float32 kernel (one pass, f32 block products added in f64) ---------------------------


def embeddings(n: int, d: int, seed: int = 0, offset: float = 0.0) -> np.ndarray:
    """float32 data like the benchmark's: a decaying spectrum plus noise, with an offset per
    column of ``offset`` times the spread."""
    rng = np.random.default_rng(seed)
    latent = min(d, 8)
    z = rng.normal(size=(n, latent)) * 3.0 * 0.7 ** np.arange(latent)
    w = np.linalg.qr(rng.normal(size=(d, latent)))[0].T
    x = z @ w + 0.1 * rng.normal(size=(n, d))
    x += offset * float(x.std()) * rng.uniform(1, 2, size=d) + rng.normal(size=d)
    return x.astype(np.float32)


def float64_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, explained variances and components (sklearn's sign rule) of the float32 values,
    computed in float64."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    a = x64 - mean
    vals, vecs = np.linalg.eigh(a.T @ a / (len(a) - 1))
    vals, vecs = vals[::-1], vecs[:, ::-1].T
    signs = np.sign(vecs[np.arange(len(vecs)), np.argmax(np.abs(vecs), axis=1)])
    return mean, vals, vecs * signs[:, None]


@pytest.mark.parametrize("offset", [0.0, 1e3])
@pytest.mark.parametrize(
    ("n", "d"),
    # Below 4096 rows (the f64 kernel); from 4096: 64 blocks of 64 rows, a partial block,
    # n not a multiple of the block, several chunks of blocks.
    [(2, 2), (3, 2), (4095, 16), (4096, 16), (4097, 16), (30_001, 24), (100_000, 8)],
)
def test_float32_kernel_matches_a_float64_reference(n: int, d: int, offset: float) -> None:
    x = embeddings(n, d, seed=n, offset=offset)
    mean_ref, ev_ref, comp_ref = float64_reference(x)
    k = min(d, n - 1, 6)  # well separated, non-zero variances (the 6th is 3% of the 1st)
    mean, comps, ev, _, total = _core.pca_fit(x, n_components=k, solver="full")
    np.testing.assert_allclose(ev[:k], ev_ref[:k], rtol=1e-6)
    np.testing.assert_allclose(total, ev_ref.sum(), rtol=1e-6)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-12 * float(x.std()))
    np.testing.assert_allclose(comps[:k], comp_ref[:k], atol=1e-6)
    # The estimator reports the same numbers (rounded to float32).
    pca = PCA(k).fit(x)
    np.testing.assert_allclose(pca.explained_variance_, ev_ref[:k], rtol=1e-6)
    np.testing.assert_allclose(pca.components_, comp_ref[:k], atol=1e-6)


def test_float32_kernel_with_a_misleading_sample_of_rows() -> None:
    # Every 97th row (close to the stride of the rows that choose the shift) is far out: the
    # result stays exact whether or not the kernel needs its second pass. The spectrum spans
    # 1e7 (far beyond float32 products), so this also checks the fall-back to float64.
    x = embeddings(100_000, 12, seed=4)
    x[::97] += 1e4
    x[::98] -= 3e3
    mean_ref, ev_ref, comp_ref = float64_reference(x)
    mean, comps, ev, _, _ = _core.pca_fit(x, n_components=6, solver="full")
    np.testing.assert_allclose(ev[:6], ev_ref[:6], rtol=1e-6)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12)
    np.testing.assert_allclose(comps[:6], comp_ref[:6], atol=1e-6)


@pytest.mark.parametrize("n_components", [None, 0.5, 8])
def test_float32_with_a_wide_spectrum_is_fitted_in_float64(n_components: float | None) -> None:
    # Variances from 1 down to 1e-8: asking for all components (None; a float share is resolved
    # after the fit, so it asks for all too) gives the float64 kernel's numbers, the same as
    # for a float64 copy.
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(10_000, 8)) * np.logspace(0, -4, 8) + 3).astype(np.float32)
    p32 = PCA(n_components).fit(x)
    p64 = PCA(n_components).fit(x.astype(np.float64))
    assert p32.n_components_ == p64.n_components_
    np.testing.assert_array_equal(
        p32.explained_variance_, p64.explained_variance_.astype(np.float32)
    )
    np.testing.assert_array_equal(p32.components_, p64.components_.astype(np.float32))


@pytest.mark.parametrize("n", [2, 4097, 12_345, 200_001])
def test_float32_kernel_does_not_depend_on_the_thread_count(n: int) -> None:
    x = embeddings(n, 2 if n == 2 else 20, seed=1, offset=10.0)
    k = min(x.shape[1], 6)
    one = _core.pca_fit(x, n_components=k, solver="full", num_threads=1)
    two = _core.pca_fit(x, n_components=k, solver="full", num_threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# -- the estimator protocol ------------------------------------------------------------------


def test_get_set_params_and_clone() -> None:
    pca = PCA(n_components=4, svd_solver="randomized", random_state=3, whiten=True)
    params = pca.get_params()
    assert params["n_components"] == 4
    assert params["svd_solver"] == "randomized"
    assert params["random_state"] == 3
    assert params["whiten"] is True
    assert pca.set_params(n_components=2, whiten=False) is pca
    assert (pca.n_components, pca.whiten) == (2, False)
    twin = clone(pca)
    assert twin is not pca
    assert twin.get_params() == pca.get_params()
    X = DATASETS["random"][0]
    pca.fit(X)
    assert not hasattr(clone(pca), "components_")
    with pytest.raises(ValueError, match="Invalid parameter"):
        pca.set_params(n_compnents=3)
    assert "PCA(" in repr(pca)


def test_refit_starts_from_scratch() -> None:
    pca = PCA(n_components=None)
    pca.fit(DATASETS["random"][0])
    pca.fit(DATASETS["wide"][0])
    assert pca.n_features_in_ == 120
    assert pca.components_.shape == (40, 120)


def test_works_in_a_pipeline_with_pandas_output() -> None:
    pd = pytest.importorskip("pandas")
    X = DATASETS["random"][0]
    pipe = make_pipeline(StandardScaler(), PCA(n_components=3)).set_output(transform="pandas")
    out = pipe.fit_transform(X)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["pca0", "pca1", "pca2"]
    ref = make_pipeline(StandardScaler(), SkPCA(n_components=3)).fit_transform(X)
    np.testing.assert_allclose(out.to_numpy(), ref, atol=1e-8)


def test_passes_sklearn_check_estimator() -> None:
    import warnings

    from sklearn.exceptions import SkipTestWarning
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        # The array-API check skips itself unless SCIPY_ARRAY_API is set.
        warnings.simplefilter("ignore", SkipTestWarning)
        results = check_estimator(PCA(), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])) for r in results if r["status"] == "failed"]
    assert failed == []


def test_is_a_sklearn_estimator() -> None:
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.utils.validation import check_is_fitted

    pca = PCA()
    assert isinstance(pca, BaseEstimator)
    assert isinstance(pca, TransformerMixin)
    with pytest.raises(SkNotFittedError):
        check_is_fitted(pca)
    check_is_fitted(pca.fit(DATASETS["random"][0]))


def test_protocol_without_sklearn() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # make `import sklearn` fail
        import numpy as np
        from rusket.pca import PCA, NotFittedError
        pca = PCA(n_components=2, random_state=1)
        assert pca.get_params()["n_components"] == 2
        assert pca.set_params(whiten=True) is pca and pca.whiten is True
        try:
            pca.set_params(bogus=1)
        except ValueError as e:
            assert "Invalid parameter" in str(e)
        else:
            raise AssertionError("set_params accepted a bad name")
        try:
            pca.transform(np.ones((2, 2)))
        except NotFittedError as e:
            assert isinstance(e, ValueError) and isinstance(e, AttributeError)
        else:
            raise AssertionError("transform before fit")
        X = np.random.default_rng(0).normal(size=(30, 4))
        Z = pca.fit_transform(X)
        assert Z.shape == (30, 2)
        assert "whiten=True" in repr(pca)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -- bad input -------------------------------------------------------------------------------


def test_nan_and_inf_are_rejected() -> None:
    X = DATASETS["random"][0].copy()
    pca = PCA(2).fit(X)
    for bad in (np.nan, np.inf, -np.inf):
        Y = X.copy()
        Y[3, 2] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            PCA(2).fit(Y)
        with pytest.raises(ValueError, match="NaN or infinity"):
            PCA(2, svd_solver="randomized").fit(Y)
        with pytest.raises(ValueError, match="NaN or infinity"):
            pca.transform(Y)


@pytest.mark.parametrize("bad", [0, -1, 13, 301, 1.0, 1.5, -0.2, "mle", True, [2]])
def test_out_of_range_n_components(bad: object) -> None:
    X = DATASETS["random"][0]  # 300 x 12
    with pytest.raises(ValueError, match="n_components"):
        PCA(n_components=bad).fit(X)  # type: ignore[arg-type]


def test_n_components_above_min_shape_for_every_solver() -> None:
    X = DATASETS["wide"][0]  # 40 x 120
    for solver in ("auto", "full", "covariance_eigh", "randomized"):
        with pytest.raises(ValueError, match=r"min\(n_samples, n_features\)=40"):
            PCA(n_components=41, svd_solver=solver).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        PCA(n_components=0.5, svd_solver="randomized").fit(X)


@pytest.mark.parametrize("bad", ["arpack", "FULL", "", None, 3])
def test_unknown_solver(bad: object) -> None:
    with pytest.raises(ValueError, match="svd_solver"):
        PCA(svd_solver=bad).fit(DATASETS["random"][0])  # type: ignore[arg-type]


def test_other_bad_parameters() -> None:
    X = DATASETS["random"][0]
    with pytest.raises(ValueError, match="whiten"):
        PCA(whiten="yes").fit(X)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="iterated_power"):
        PCA(svd_solver="randomized", iterated_power=-1).fit(X)
    with pytest.raises(ValueError, match="n_oversamples"):
        PCA(n_oversamples=-3).fit(X)
    with pytest.raises(ValueError, match="num_threads"):
        PCA(num_threads=-1).fit(X)
    with pytest.raises(ValueError, match="random_state"):
        PCA(svd_solver="randomized", random_state=-5).fit(X)
    with pytest.raises(ValueError, match="random_state"):
        PCA(svd_solver="randomized", random_state="seed").fit(X)


def test_thread_count_is_bounded() -> None:
    X = DATASETS["random"][0]
    for bad in (1025, 10**6):
        with pytest.raises(ValueError, match="num_threads must be at most 1024"):
            PCA(num_threads=bad).fit(X)
    with pytest.raises(ValueError, match="num_threads must be at most 1024"):
        _core.pca_fit(X, n_components=2, solver="full", num_threads=10**6)


@pytest.mark.parametrize("oversamples", [2**63, 2**64 - 1, 2**64 + 5, 2**100])
def test_n_oversamples_whose_sum_overflows_is_a_value_error(oversamples: int) -> None:
    X = np.random.default_rng(0).normal(size=(50, 5))
    for solver in ("randomized", "full"):
        with pytest.raises(ValueError, match="n_oversamples=.* is too large"):
            PCA(n_components=2, svd_solver=solver, n_oversamples=oversamples).fit(X)
    with pytest.raises(ValueError, match="n_oversamples"):
        PCA(n_components=2, n_oversamples=True).fit(X)  # type: ignore[arg-type]


def test_n_oversamples_beyond_the_rank_is_the_full_subspace() -> None:
    X = np.random.default_rng(0).normal(size=(50, 5))
    big = PCA(n_components=2, svd_solver="randomized", n_oversamples=2**62, random_state=0)
    small = PCA(n_components=2, svd_solver="randomized", n_oversamples=3, random_state=0)
    big.fit(X), small.fit(X)
    assert big.components_.shape == (2, 5)
    np.testing.assert_array_equal(big.components_, small.components_)
    # The native function checks the sum itself (64-bit sizes).
    with pytest.raises(ValueError, match="n_oversamples overflows"):
        _core.pca_fit(X, n_components=2, solver="randomized", n_oversamples=2**64 - 1)


@pytest.mark.parametrize("scale", [1e155, 1e200, 1e300])
@pytest.mark.parametrize("solver", ["full", "randomized"])
@pytest.mark.parametrize("shape", [(100, 3), (6, 40)])
def test_values_near_the_float64_limit_raise_instead_of_nan(
    scale: float, solver: str, shape: tuple[int, int]
) -> None:
    X = np.random.default_rng(1).normal(size=shape) * scale
    with pytest.raises(ValueError, match=r"too large for float64.*Rescale X"):
        PCA(n_components=2, svd_solver=solver).fit(X)
    # Rescaled as the message says, the same data fits; its components are those of X.
    fitted = PCA(n_components=2, svd_solver=solver, random_state=0).fit(X / np.abs(X).max())
    assert np.isfinite(fitted.components_).all() and (fitted.explained_variance_ > 0).all()


def test_column_sums_that_overflow_raise_and_large_finite_data_is_exact() -> None:
    X = np.full((20, 2), 1.5e308)
    X[:, 0] -= np.arange(20) * 1e300
    with pytest.raises(ValueError, match="column sums overflow"):
        PCA(n_components=1).fit(X)
    # 1e150: squares of deviations still fit: the variances are the scaled ones.
    Y = DATASETS["random"][0]
    big, ref = PCA(n_components=3).fit(Y * 1e150), PCA(n_components=3).fit(Y)
    np.testing.assert_allclose(big.explained_variance_, ref.explained_variance_ * 1e300, rtol=1e-9)
    np.testing.assert_allclose(big.components_, ref.components_, atol=1e-9)


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="2-d array"):
        PCA(1).fit(np.arange(10.0))
    with pytest.raises(ValueError, match="2-d array"):
        PCA(1).fit(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        PCA(1).fit(np.ones((1, 5)))
    with pytest.raises(ValueError, match=r"0 feature\(s\)"):
        PCA(None).fit(np.ones((5, 0)))
    with pytest.raises(ValueError, match="Complex data not supported"):
        PCA(1).fit(np.ones((4, 2), dtype=complex))
    with pytest.raises(ValueError, match="numeric"):
        PCA(1).fit([["a", "b"], ["c", "d"]])
    with pytest.raises(TypeError, match="numeric"):
        PCA(1).fit(np.array([[{"a": 1}, 2.0], [3.0, 4.0]], dtype=object))
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="dense"):
        PCA(1).fit(sp.random(10, 4, density=0.5, format="csr"))


def test_transform_before_fit_is_not_fitted_error() -> None:
    pca = PCA(2)
    assert NotFittedError is SkNotFittedError
    with pytest.raises(SkNotFittedError, match="not fitted"):
        pca.transform(np.ones((3, 3)))
    with pytest.raises(SkNotFittedError):
        pca.inverse_transform(np.ones((3, 2)))
    with pytest.raises(SkNotFittedError):
        pca.get_feature_names_out()


def test_wrong_feature_count_at_transform() -> None:
    pca = PCA(2).fit(DATASETS["random"][0])
    with pytest.raises(ValueError, match="X has 5 features, but PCA is expecting 12"):
        pca.transform(np.ones((3, 5)))
    with pytest.raises(ValueError, match="2-d array"):
        pca.transform(np.ones(12))
    with pytest.raises(ValueError, match="n_components_=2"):
        pca.inverse_transform(np.ones((3, 3)))


def test_core_function_checks_its_input() -> None:
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match="svd_solver"):
        _core.pca_fit(X, n_components=0, solver="lapack")
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.pca_fit(
            np.asfortranarray(np.random.default_rng(0).normal(size=(5, 3))),
            n_components=0,
            solver="full",
        )
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.pca_fit(X.astype(np.int64), n_components=0, solver="full")
    with pytest.raises(ValueError, match="n_components"):
        _core.pca_fit(X, n_components=4, solver="randomized")


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 40),
    d=st.integers(1, 15),
    seed=st.integers(0, 2**16),
    solver=st.sampled_from(["covariance_eigh", "randomized"]),
)
def test_variances_and_reconstruction_match_sklearn(n: int, d: int, seed: int, solver: str) -> None:
    X = random_data(n, d, seed)
    r = min(n, d)
    ours = PCA(n_components=r, svd_solver=solver, random_state=0).fit(X)
    ref = SkPCA(n_components=r, svd_solver="full").fit(X)
    scale = max(float(ref.explained_variance_[0]), 1e-300)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, atol=1e-8 * scale)
    np.testing.assert_allclose(
        ours.inverse_transform(ours.transform(X)), X, atol=1e-7 * (1 + np.abs(X).max())
    )
    comps = ours.components_
    np.testing.assert_allclose(comps @ comps.T, np.eye(r), atol=1e-8)
