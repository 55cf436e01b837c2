from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One quiet local SparkSession for the whole test run (start-up costs ~10 s)."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    tmp = tmp_path_factory.mktemp("spark")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("rusket-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.warehouse.dir", str(tmp / "warehouse"))
        .config(
            "spark.driver.extraJavaOptions",
            f"-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dderby.system.home={tmp}",
        )
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def purchases() -> pd.DataFrame:
    """The cookbook's order lines: 1,000 customers x 500 articles x 5,000 rows."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(0, 1000, size=5000),
            "article_id": rng.integers(0, 500, size=5000),
            "sales_amount": rng.exponential(50, size=5000),
        }
    )


@pytest.fixture
def small_purchases() -> pd.DataFrame:
    """A small log with string ids, duplicates and a heavy user."""
    rng = np.random.default_rng(1)
    n = 400
    return pd.DataFrame(
        {
            "customer_id": [f"c{u:03d}" for u in rng.integers(0, 60, n)],
            "article_id": [f"a{i:02d}" for i in rng.integers(0, 40, n)],
            "sales_amount": rng.exponential(20, n),
        }
    )
