from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest


def pytest_configure(config):
    try:
        import pyspark
    except ImportError:
        return
    if pyspark.__version__.startswith("3."):
        # PySpark 3.5 leaves the socket of an Arrow collection (toPandas, _collect_as_arrow)
        # for the garbage collector; 4.x closes it.
        config.addinivalue_line("filterwarnings", "ignore:unclosed <socket.socket:ResourceWarning")


def _quiet_conf(home: str) -> dict[str, str]:
    """The quick, quiet local settings of ../shared/ENVIRONMENT.md, with files under ``home``."""
    return {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.driver.memory": "1g",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.warehouse.dir": f"{home}/warehouse",
        "spark.driver.extraJavaOptions": (
            f"-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dderby.system.home={home}"
        ),
    }


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One quiet local SparkSession for the whole test run (start-up costs ~10 s)."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    tmp = tmp_path_factory.mktemp("spark")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    builder = pyspark_sql.SparkSession.builder.master("local[2]").appName("rusket-tests")
    for key, value in _quiet_conf(str(tmp)).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# The Spark Connect server runs in a child process: a local server in this process would need
# the classic SparkContext that the `spark` fixture already holds (one per process).
_CONNECT_SERVER = textwrap.dedent(
    """
    import json
    import sys
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName("rusket-connect-server")
    for key, value in json.loads(sys.argv[1]).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    print("ready", flush=True)
    sys.stdin.read()  # until the test session closes our stdin
    spark.stop()
    """
)


@pytest.fixture(scope="session")
def _connect_server(tmp_path_factory):
    """A local Spark Connect server (PySpark >= 4) for the whole test run: ``sc://`` address.

    It runs on this interpreter, or on ``RUSKET_CONNECT_SERVER_PYTHON`` (``make test`` points the
    PySpark 3.5 run at the main venv, so a 3.5 Connect client talks to a 4.x server, as on
    Databricks serverless). Its executors run with ``spark.task.cpus=2`` (one task at a time on
    ``local[2]``), so tests can tell that settings are read over Connect.
    """
    pyspark = pytest.importorskip("pyspark")
    server_python = os.environ.get("RUSKET_CONNECT_SERVER_PYTHON", sys.executable)
    if server_python == sys.executable and int(pyspark.__version__.split(".")[0]) < 4:
        pytest.skip(
            "the local Spark Connect server ships with PySpark 4 (this is "
            f"{pyspark.__version__}); set RUSKET_CONNECT_SERVER_PYTHON to a PySpark 4 python"
        )
    pytest.importorskip("grpc", reason="Spark Connect needs the spark-local extra's grpcio")
    home = tmp_path_factory.mktemp("spark-connect")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = {
        "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.task.cpus": "2",
        **_quiet_conf(str(home)),
    }
    env = dict(os.environ, PYSPARK_PYTHON=server_python, SPARK_LOCAL_IP="127.0.0.1")
    for var in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE"):
        env.pop(var, None)
    log = open(home / "server.log", "w")  # closed at teardown
    proc = subprocess.Popen(
        [server_python, "-c", _CONNECT_SERVER, json.dumps(conf)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()  # "ready", or "" if the server died
        if line.strip() != "ready":
            proc.wait(timeout=30)
            raise RuntimeError(
                f"the Spark Connect server did not start (exit {proc.returncode}): "
                + (home / "server.log").read_text()[-3000:]
            )
        yield f"sc://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        log.close()


@pytest.fixture(scope="session")
def _connect_session(_connect_server):
    from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

    session = RemoteSparkSession.builder.remote(_connect_server).getOrCreate()
    yield session
    session.stop()


@pytest.fixture
def connect_spark(_connect_session, monkeypatch):
    """A Spark Connect session, as Databricks serverless gives one (no SparkContext).

    PySpark picks Connect's column functions while ``SPARK_CONNECT_MODE_ENABLED`` is set, as in
    a Connect-only process; it is set for the test only, because this process also holds the
    classic session of the ``spark`` fixture.
    """
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
    return _connect_session


@pytest.fixture(params=["classic", "connect"])
def any_spark(request):
    """The classic session and the Spark Connect session in turn."""
    return request.getfixturevalue("spark" if request.param == "classic" else "connect_spark")


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
