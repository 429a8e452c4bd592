# The two commands a new user types: `make run` and `make test`. Both build .venv first when it is
# missing or pyproject.toml changed. Nothing is downloaded but packages from PyPI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-browser lab lab-live lint clean udf-jar

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is needed (PyFlink 2.3 wheels): set PYTHON=python3.11 or use environment.yml")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/clicklab run

# Workaround, not a fix (an open bug): after some other tests have made table environments in the process, a session
# can no longer load the jar's Java function classes (ClassNotFoundException). The tests that register the Java
# functions, and the tests that submit to a standalone cluster, each run in a pytest process of their own.
JAVA_TESTS := tests/test_java_udf.py tests/test_keyed.py tests/test_score.py tests/test_sql_app.py \
	tests/test_zeppelin_params_java.py tests/test_kafka_broker.py tests/test_kafka_pipeline.py \
	tests/test_kafka_alerts.py tests/test_kafka_lab.py
CLUSTER_TESTS := tests/test_cluster.py tests/test_faults.py tests/test_cluster_cancel.py tests/test_kafka_live.py \
	tests/test_kafka_faults.py
# The learner's path in a real browser (JupyterLab, Playwright, Debian's Chromium; `.ci/run` installs it):
# every notebook run from the UI, replay and live. Skipped with one line where Chromium is missing.
BROWSER_TESTS := tests/test_browser.py tests/test_browser_live.py

# The Java and cluster tests run, one process after the other, beside the browser tests (these wait on JupyterLab
# and on live events in real time more than they compute; every test waits for conditions, not for the clock):
# their output follows the browser tests', from build/test-java.log and build/test-cluster.log.
test: $(STAMP)
	$(BIN)/python -m pytest $(foreach t,$(JAVA_TESTS) $(CLUSTER_TESTS) $(BROWSER_TESTS),--ignore=$(t))
	@mkdir -p build
	@( $(BIN)/python -m pytest $(JAVA_TESTS) > build/test-java.log 2>&1; java=$$?; \
	   $(BIN)/python -m pytest $(CLUSTER_TESTS) > build/test-cluster.log 2>&1; \
	   test $$java -eq 0 -a $$? -eq 0 ) & beside=$$!; \
	$(BIN)/python -m pytest $(BROWSER_TESTS); browser=$$?; \
	wait $$beside; status=$$?; \
	echo "--- the Java tests (they ran beside the browser tests): $(JAVA_TESTS)"; cat build/test-java.log; \
	echo "--- the cluster tests (after the Java tests): $(CLUSTER_TESTS)"; cat build/test-cluster.log; \
	test $$browser -eq 0 -a $$status -eq 0

# Screenshots of every notebook as a learner sees it go to build/screenshots/{replay,live}/.
test-browser: $(STAMP)
	$(BIN)/python -m pytest $(BROWSER_TESTS)

# The tests that need no JVM, Flink job or server (markers in pyproject.toml): under a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not flink and not server"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

# The same notebooks in live mode (live = None in their parameters reads CLICKLAB_LIVE): the first one starts the
# cluster and the live generator; 12_cleanup stops them.
lab-live: $(STAMP)
	CLICKLAB_LIVE=1 $(BIN)/jupyter lab notebooks/

lint: $(STAMP)
	$(BIN)/ruff check clicklab tests udf

# The Java RANDOM_CUT_FOREST for Managed Service for Apache Flink Studio (and the local `java` backend):
# build/udf/clickstream-rcf-udf.jar, javac --release 11 against the venv's Flink and jrcf jars (needs a JDK).
udf-jar: $(STAMP)
	$(BIN)/clicklab udf-jar

clean:
	rm -rf build
