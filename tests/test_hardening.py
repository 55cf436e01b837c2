"""Hostile input and scale (issue 10): memory bounded by the items, never by ``n``; labels that
cannot change silently; a bounded thread count; arrays written in place that alias an input."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

import rusket
from rusket import _core
from rusket._validation import (
    MAX_THREADS,
    check_label_array,
    check_no_bools,
    check_threads,
    lookup,
)
from rusket.interactions import Interactions

# --- #3: memory follows the number of items, not n ---------------------------------------------


def _factors(m, n_items, f=8, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(m, f)).astype(np.float32)
    v = rng.normal(size=(n_items, f)).astype(np.float32)
    return q, v


@pytest.mark.parametrize("n", [31, 10**9, 2**62, 2**63 - 1])
def test_topk_width_is_clamped_to_the_number_of_items(n):
    q, v = _factors(7, 30)
    indptr = np.array([0, 2, 2, 5, 5, 5, 6, 30], np.int64)
    indices = np.r_[[1, 4], [0, 2, 3], [29], np.arange(24)].astype(np.int32)
    ref = _core.topk(q, v, 30, exclude_indptr=indptr, exclude_indices=indices)
    got = _core.topk(q, v, n, exclude_indptr=indptr, exclude_indices=indices)
    assert got[0].shape == got[1].shape == (7, 30)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    # Smaller n: the first n columns of the full ranking.
    idx5, _ = _core.topk(q, v, 5, exclude_indptr=indptr, exclude_indices=indices)
    np.testing.assert_array_equal(idx5, ref[0][:, :5])
    # No items at all: rows of width 0.
    idx0, sc0 = _core.topk(q, v[:0], 10)
    assert idx0.shape == sc0.shape == (7, 0)


def _peak_rss_delta_mb(script: str) -> float:
    """Runs ``script`` in a fresh interpreter; it must print the peak-RSS growth (KiB) of its
    measured part on the last line. Returns MiB."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return int(out.stdout.strip().splitlines()[-1]) / 1024


_RSS_PRELUDE = """
    import resource
    import numpy as np
    import rusket
    from rusket import _core

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
"""


def test_huge_n_in_the_kernel_touches_no_memory():
    delta = _peak_rss_delta_mb(
        _RSS_PRELUDE
        + """
    rng = np.random.default_rng(0)
    q = rng.normal(size=(200, 16)).astype(np.float32)
    v = rng.normal(size=(30, 16)).astype(np.float32)
    ref = _core.topk(q, v, 30)
    before = peak()
    for n in (10**8, 10**9, 2**62):
        idx, sc = _core.topk(q, v, n)
        assert idx.shape == (200, 30), idx.shape
        assert (idx == ref[0]).all() and np.array_equal(sc, ref[1])
    print(peak() - before)
    """
    )
    assert delta < 100, f"peak RSS grew by {delta:.0f} MiB"


def test_huge_n_for_one_customer_or_article_touches_no_memory():
    delta = _peak_rss_delta_mb(
        _RSS_PRELUDE
        + """
    rng = np.random.default_rng(1)
    df = {"c": rng.integers(0, 50, 400), "a": rng.integers(0, 30, 400)}
    import pandas as pd
    model = rusket.ALS(factors=4, iterations=2, seed=0).from_transactions(
        pd.DataFrame(df), "c", "a"
    )
    u, a = model.user_labels[0], model.item_labels[0]
    ref_i = model.recommend_items(u, n=30)
    ref_u = model.recommend_users(a, n=50)
    before = peak()
    got_i = model.recommend_items(u, n=10**9)
    got_u = model.recommend_users(a, n=10**9)
    for (gl, gs), (rl, rs) in ((got_i, ref_i), (got_u, ref_u)):
        assert np.array_equal(gl, rl) and np.array_equal(gs, rs)
    print(peak() - before)
    """
    )
    assert delta < 100, f"peak RSS grew by {delta:.0f} MiB"


def test_huge_n_for_all_customers_touches_no_memory():
    delta = _peak_rss_delta_mb(
        _RSS_PRELUDE
        + """
    rng = np.random.default_rng(2)
    import pandas as pd
    df = pd.DataFrame({"c": rng.integers(0, 300, 2000), "a": rng.integers(0, 30, 2000)})
    model = rusket.ALS(factors=4, iterations=2, seed=0).from_transactions(df, "c", "a")
    ref = model.batch_recommend(n=30, format="pandas")
    before = peak()
    got = model.batch_recommend(n=10**8, format="pandas")
    assert got.equals(ref)
    print(peak() - before)
    """
    )
    assert delta < 100, f"peak RSS grew by {delta:.0f} MiB"


# --- #4: labels never change silently ------------------------------------------------------------


def test_check_label_array_refuses_uint64_beyond_int64_and_booleans():
    ok = check_label_array(np.array([0, 2**63 - 1], np.uint64), "user_labels")
    assert ok.dtype == np.int64 and ok.tolist() == [0, 2**63 - 1]
    with pytest.raises(ValueError, match=r"user_labels must fit int64.*9223372036854775808"):
        check_label_array(np.array([1, 2**63], np.uint64), "user_labels")
    with pytest.raises(ValueError, match=r"item_labels must fit int64.*18446744073709551616"):
        check_label_array(np.array([1, 2**64], dtype=object), "item_labels")
    with pytest.raises(ValueError, match="item_labels must fit int64"):
        check_label_array(np.array([-(2**63) - 1, 0], dtype=object), "item_labels")
    with pytest.raises(TypeError, match="user_labels.*not booleans"):
        check_label_array(np.array([True, False]), "user_labels")
    with pytest.raises(TypeError, match="not booleans"):
        check_label_array(np.array([1, True], dtype=object), "user_labels")
    big = check_label_array(np.array([2**62, -(2**63)], dtype=object), "user_labels")
    assert big.dtype == np.int64 and big.tolist() == [2**62, -(2**63)]
    strings = np.array(["a", "b"], dtype=object)
    assert check_label_array(strings, "user_labels") is strings
    assert check_label_array(np.array([1, 2], np.int8), "x").dtype == np.int64


def test_fit_refuses_uint64_labels_beyond_int64():
    X = sp.random(6, 5, density=0.6, random_state=0, format="csr")
    labels = np.arange(6, dtype=np.uint64) + np.uint64(2**63)
    with pytest.raises(ValueError, match="user_labels must fit int64"):
        rusket.ALS(factors=2, iterations=1).fit(X, user_labels=labels)


@pytest.mark.parametrize("bad", [np.uint64(2**63), np.uint64(2**64 - 1)])
def test_from_transactions_refuses_uint64_ids_beyond_int64(bad):
    df = pd.DataFrame({"c": np.array([1, bad], np.uint64), "a": [1, 2]})
    for data in (df, pa.Table.from_pandas(df)):
        with pytest.raises(ValueError, match=r"column 'c' has ids up to \d+, beyond int64"):
            rusket.Popularity.from_transactions(data, "c", "a")
    # Up to 2**63 - 1 they are ordinary ids.
    ok = pd.DataFrame({"c": np.array([1, 2**63 - 1], np.uint64), "a": [1, 2]})
    assert rusket.Popularity.from_transactions(ok, "c", "a").user_labels.tolist() == [1, 2**63 - 1]


def test_boolean_id_columns_are_a_type_error_naming_the_column():
    df = pd.DataFrame({"c": [True, False], "a": [1, 2]})
    with pytest.raises(TypeError, match="column 'c' holds booleans"):
        rusket.Popularity.from_transactions(df, "c", "a")
    mixed = pd.DataFrame({"c": [1, 2], "a": [1, True]})
    with pytest.raises(TypeError, match="column 'a'"):
        rusket.Popularity.from_transactions(mixed, "c", "a")
    with pytest.raises(TypeError, match="column 'a'"):
        rusket.Popularity.from_transactions(pd.DataFrame({"c": [1, 2], "a": [1, "x"]}), "c", "a")


def test_integer_column_names_work_as_in_read_csv_without_header(tmp_path):
    path = tmp_path / "lines.csv"
    path.write_text("1,a,2.5\n1,b,1.0\n2,a,4.0\n1,a,0.5\n")
    df = pd.read_csv(path, header=None)
    assert list(df.columns) == [0, 1, 2]
    model = rusket.Popularity.from_transactions(df, 0, 1, 2)
    assert model.user_labels.tolist() == [1, 2] and model.item_labels.tolist() == ["a", "b"]
    named = df.rename(columns={0: "c", 1: "a", 2: "r"})
    ref = rusket.Popularity.from_transactions(named, "c", "a", "r")
    assert model.buyer_counts.tolist() == ref.buyer_counts.tolist() == [2, 1]
    assert model.batch_recommend(format="pandas").equals(ref.batch_recommend(format="pandas"))
    inter = Interactions.from_frame(df, 0, 1, 2)
    assert inter.matrix.toarray().tolist() == [[3.0, 1.0], [4.0, 0.0]]
    # A string name does not match an integer one (and the error lists what is there).
    with pytest.raises(KeyError, match=r"column '0' is not in the data.*\[0, 1, 2\]"):
        rusket.Popularity.from_transactions(df, "0", 1)
    with pytest.raises(TypeError, match="transaction_col must be a column name"):
        rusket.Popularity.from_transactions(df, True, 1)
    with pytest.raises(TypeError, match="rating_col must be a column name"):
        rusket.Popularity.from_transactions(df, 0, 1, 2.0)
    with pytest.raises(ValueError, match="must differ"):
        rusket.Popularity.from_transactions(df, 0, 0)
    # Duplicated column names are ambiguous.
    dup = pd.DataFrame([[1, 2, 3]], columns=["c", "a", "a"])
    with pytest.raises(ValueError, match="column 'a' appears 2 times"):
        rusket.Popularity.from_transactions(dup, "c", "a")


def test_boolean_keys_are_never_labels():
    for keys in (True, np.bool_(False), [0, True], (np.bool_(True),), np.array([True, False])):
        with pytest.raises(TypeError, match="never booleans"):
            check_no_bools(keys, "user")
        with pytest.raises(TypeError, match="never booleans"):
            lookup(np.array([0, 1, 2]), keys, "user")
    with pytest.raises(TypeError, match="never booleans"):
        check_no_bools(pd.Series([True, False]), "user")
    with pytest.raises(TypeError, match="never booleans"):
        check_no_bools(np.array([1, True], dtype=object), "user")
    for fine in (0, "a", [0, 1], np.array([1, 2]), pd.Series([1, 2]), []):
        check_no_bools(fine, "user")


def test_lookup_handles_keys_beyond_int64_and_of_the_wrong_kind():
    labels = np.array([1, 2**63 - 1])
    assert lookup(labels, np.array([2**63 - 1], np.uint64), "user").tolist() == [1]
    for key in (np.uint64(2**63), 2**64, [1, 2**70], -(2**63) - 1):
        with pytest.raises(KeyError, match="unknown user"):
            lookup(labels, key, "user")
    with pytest.raises(KeyError, match="labels are integers"):
        lookup(labels, 1.0, "user")
    with pytest.raises(KeyError, match="labels are strings"):
        lookup(np.array(["a"], dtype=object), 1, "user")


def test_boolean_keys_in_recommendations_raise_instead_of_scoring_another_customer():
    model = rusket.Popularity.from_transactions(
        pd.DataFrame({"c": [0, 1, 1, 2], "a": [5, 5, 6, 7]}), "c", "a"
    )
    with pytest.raises((TypeError, KeyError)):
        model.recommend_items(True)


def test_boolean_in_a_list_of_users_is_refused():
    model = rusket.Popularity.from_transactions(
        pd.DataFrame({"c": [0, 1, 1, 2], "a": [5, 5, 6, 7]}), "c", "a"
    )
    with pytest.raises(TypeError, match="never booleans"):
        model.batch_recommend(users=[0, True], format="numpy")


# --- #6: a bounded number of threads ---------------------------------------------------------


def test_check_threads_bounds():
    assert check_threads(0) == 0 and check_threads(MAX_THREADS) == MAX_THREADS
    with pytest.raises(ValueError, match="num_threads must be at most 1024"):
        check_threads(MAX_THREADS + 1)
    with pytest.raises(ValueError, match="threads must be at most"):
        check_threads(10**6, "threads")
    with pytest.raises(ValueError, match=">= 0"):
        check_threads(-1)
    with pytest.raises(TypeError):
        check_threads(True)


def test_native_functions_refuse_absurd_thread_counts_before_starting_any():
    q, v = _factors(3, 4)
    indptr, indices = np.zeros(4, np.int64), np.zeros(0, np.int32)
    data = np.zeros(0, np.float32)
    target = np.zeros((3, 8), np.float32)
    x = np.random.default_rng(0).normal(size=(20, 3))
    for bad in (MAX_THREADS + 1, 10**6, 2**63):
        msg = f"num_threads must be at most {MAX_THREADS}"
        with pytest.raises(ValueError, match=msg):
            _core.topk(q, v, 2, num_threads=bad)
        with pytest.raises(ValueError, match=msg):
            _core.als_solve_side(
                indptr, indices, data, v, target, regularization=0.1, solver="cg",
                cg_steps=3, num_threads=bad,
            )  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            _core.als_loss(indptr, indices, data, q, v, regularization=0.1, num_threads=bad)
        with pytest.raises(ValueError, match=msg):
            _core.pca_fit(x, n_components=2, solver="full", num_threads=bad)


def test_estimators_refuse_absurd_thread_counts():
    X = sp.random(6, 5, density=0.6, random_state=0, format="csr")
    with pytest.raises(ValueError, match="num_threads must be at most 1024"):
        rusket.ALS(factors=2, iterations=1, num_threads=10**6).fit(X)
    with pytest.raises(ValueError, match="num_threads must be at most 1024"):
        rusket.PCA(n_components=1, num_threads=10**6).fit(np.eye(3))


# --- #9: an array written in place must not alias an input -----------------------------------


def _solve_kwargs():
    return {"regularization": 0.1, "solver": "cg", "cg_steps": 3, "num_threads": 1}


def _csr(n_rows, n_cols):
    m = sp.random(n_rows, n_cols, density=0.5, random_state=1, format="csr", dtype=np.float32)
    return m.indptr.astype(np.int64), m.indices.astype(np.int32), (1 + m.data).astype(np.float32)


def test_target_sharing_memory_with_fixed_through_buffer_views_is_refused():
    indptr, indices, data = _csr(4, 4)
    buf = bytearray(4 * 4 * 3)
    # Two views of one buffer with different bases: numpy's borrow tracking cannot see them.
    fixed = np.frombuffer(buf, dtype=np.float32).reshape(4, 3)
    target = np.frombuffer(buf, dtype=np.float32).reshape(4, 3)
    assert fixed.base is not target.base and np.shares_memory(fixed, target)
    fixed[:] = 0.5
    with pytest.raises(ValueError, match="target shares memory with fixed"):
        _core.als_solve_side(indptr, indices, data, fixed, target, **_solve_kwargs())
    # Partial overlap (shifted by one row) is refused too.
    big = bytearray(4 * 3 * 5)
    fixed = np.frombuffer(big, dtype=np.float32, count=12).reshape(4, 3)
    target = np.frombuffer(big, dtype=np.float32, offset=12, count=12).reshape(4, 3)
    with pytest.raises(ValueError, match="target shares memory with fixed"):
        _core.als_solve_side(indptr, indices, data, fixed, target, **_solve_kwargs())
    # The same array twice, and views of one base array: the same kind of error.
    a = np.full((4, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        _core.als_solve_side(indptr, indices, data, a, a, **_solve_kwargs())
    with pytest.raises(ValueError, match="shares memory"):
        _core.als_solve_side(indptr, indices, data, a[:], a[:], **_solve_kwargs())


def test_target_sharing_memory_with_the_csr_arrays_is_refused():
    indptr, indices, data = _csr(3, 3)
    fixed = np.full((3, 1), 0.5, np.float32)
    # target over the bytes of `data` (same dtype, separate buffer views).
    raw = bytearray(data.tobytes() + bytes(64))
    data_view = np.frombuffer(raw, dtype=np.float32, count=len(data))
    target = np.frombuffer(raw, dtype=np.float32, count=3).reshape(3, 1)
    with pytest.raises(ValueError, match="target shares memory with data"):
        _core.als_solve_side(indptr, indices, data_view, fixed, target, **_solve_kwargs())
    # target over the bytes of `indptr`.
    raw = bytearray(indptr.tobytes())
    indptr_view = np.frombuffer(raw, dtype=np.int64)
    target = np.frombuffer(raw, dtype=np.float32, count=3).reshape(3, 1)
    with pytest.raises(ValueError, match="target shares memory with indptr"):
        _core.als_solve_side(indptr_view, indices, data, fixed, target, **_solve_kwargs())


def test_disjoint_parts_of_one_buffer_and_read_only_targets():
    indptr, indices, data = _csr(4, 4)
    buf = np.zeros(24, np.float32)
    buf[:12] = 0.5
    fixed, target = buf[:12].reshape(4, 3), buf[12:].reshape(4, 3)
    _core.als_solve_side(indptr, indices, data, fixed, target, **_solve_kwargs())
    ref = np.zeros((4, 3), np.float32)
    _core.als_solve_side(indptr, indices, data, fixed.copy(), ref, **_solve_kwargs())
    np.testing.assert_array_equal(target, ref)
    ro = np.zeros((4, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _core.als_solve_side(indptr, indices, data, fixed, ro, **_solve_kwargs())
