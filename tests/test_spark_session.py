"""rusket.spark.local_session: reuses the running session, checks its arguments first."""

from __future__ import annotations

import pytest

import rusket.spark
from rusket._formats import arrow_to_spark, get_spark, spark_to_arrow


@pytest.mark.spark
def test_local_session_returns_the_active_session(spark):
    # The session-scoped fixture is running: no second JVM or session is started, and none of
    # the arguments is applied to the running one.
    session = rusket.spark.local_session(app_name="other", cores=3, shuffle_partitions=7)
    assert session is spark
    assert session.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert session.conf.get("spark.sql.shuffle.partitions") == "2"
    assert session.sparkContext.appName == "rusket-tests"
    # The exporter's helper goes the same way.
    assert get_spark() is spark


@pytest.mark.spark
def test_local_session_is_usable_for_arrow_round_trips(spark):
    pa = pytest.importorskip("pyarrow")
    session = rusket.spark.local_session()
    df = arrow_to_spark(session, pa.table({"customer_id": [1, 2], "article_id": ["a", "b"]}))
    assert spark_to_arrow(df).column("article_id").to_pylist() == ["a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cores": 0}, ValueError, "cores"),
        ({"cores": 2.5}, TypeError, "cores"),
        ({"cores": True}, TypeError, "cores"),
        ({"shuffle_partitions": 0}, ValueError, "shuffle_partitions"),
        ({"app_name": 3}, TypeError, "app_name"),
        ({"config": [("spark.ui.enabled", "false")]}, TypeError, "config"),
    ],
)
def test_local_session_rejects_bad_arguments_before_starting_spark(kwargs, error, match):
    with pytest.raises(error, match=match):
        rusket.spark.local_session(**kwargs)
