"""Spark Connect (Databricks serverless, shared access mode): no SparkContext on the client.

The cookbook's steps over Connect are in ``test_spark_compat.py`` (each runs on a classic and a
Connect session and is compared with the same step without Spark); here, what only Connect
changes: helpers that must not touch ``sparkContext``, and settings read over Connect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import rusket
import rusket.spark
from rusket._formats import _is_connect, get_spark, spark_to_arrow
from rusket.spark import _default_parallelism, _task_cpus

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def als():
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 80, 900),
            "article_id": [f"SKU-{i:03d}" for i in rng.integers(0, 40, 900)],
        }
    )
    return rusket.ALS(factors=6, iterations=3, seed=2).from_transactions(
        df, "customer_id", "article_id"
    )


def test_the_connect_session_has_no_spark_context(connect_spark):
    assert _is_connect(connect_spark)
    with pytest.raises(Exception, match="sparkContext|JVM_ATTRIBUTE_NOT_SUPPORTED"):
        _ = connect_spark.sparkContext


def test_helpers_return_the_running_connect_session(connect_spark):
    # As on Databricks serverless: the notebook's session is used as is, nothing is started.
    assert rusket.spark.local_session(app_name="other", cores=3) is connect_spark
    assert get_spark() is connect_spark


def test_settings_are_read_over_connect(connect_spark, spark):
    # The Connect server runs with spark.task.cpus=2 and default parallelism 2; the classic test
    # session leaves spark.task.cpus unset.
    assert _task_cpus(connect_spark) == 2
    assert _default_parallelism(connect_spark) == 2
    assert _task_cpus(spark) == 1


def test_batch_recommend_over_connect_needs_no_spark_context(connect_spark, als):
    # No num_partitions, no num_threads: both come from the session's settings over Connect.
    recs = rusket.spark.batch_recommend(als, n=4)
    assert _is_connect(recs)
    got = spark_to_arrow(recs)
    want = als.batch_recommend(n=4, format="arrow")
    key = ["user_id", "rank"]
    assert (
        got.sort_by([(k, "ascending") for k in key]).to_pylist()
        == want.sort_by([(k, "ascending") for k in key]).to_pylist()
    )
