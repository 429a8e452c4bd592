"""The Java ``RANDOM_CUT_FOREST``: build its jar, find it, register it (the ``java`` backend).

Managed Service for Apache Flink Studio cannot import our Python package, so the lab's scoring
function also exists in Java (``udf/java/clicklab/udf/``): a Flink ``ScalarFunction`` that keeps one
AWS Random Cut Forest per key, with the parameters, defaults and warm-up of the Python UDF
(:class:`clicklab_udf.forest.ForestParams`). :func:`build_jar` compiles it with plain ``javac
--release 11`` (Studio runs Java 11) against the Flink jars of the ``apache-flink`` package and AWS's
``randomcutforest-core`` jar of the ``jrcf`` package, and packs the RCF classes into the same jar
(Flink's own classes stay out), so the jar is the one file a user uploads to Studio. The jar is
rebuilt only when its inputs change (a digest of them is kept in its manifest).

The same jar holds the lab's **keyed** functions, the process table functions the pipeline runs
(Flink 2.1+; Studio's Flink versions have none): ``RANDOM_CUT_FOREST(TABLE t PARTITION BY site,
DESCRIPTOR(ctr))`` (:data:`KEYED_FUNCTIONS`, class ``KeyedRandomCutForest``), one compact forest per site in
Flink's keyed state, ``ANOMALY_DECISIONS(TABLE t PARTITION BY site)``, the adaptive threshold per site
in keyed state, and ``RANDOM_CUT_FOREST_WITH_EXPLANATION(TABLE t PARTITION BY site, DESCRIPTOR(clicks,
impressions))`` (class ``KeyedRandomCutForestWithExplanation``), the forest over several columns with Kinesis Data
Analytics' per-column explanation. :func:`register_keyed` registers them, with the forest's parameters and the
threshold's as job parameters (``rcf.*``, ``threshold.*``).

Locally the jar's scalar function is a third backend, ``java``: :func:`register` puts it on ``pipeline.jars``, passes
the forest's parameters as Flink job parameters (``pipeline.global-job-parameters``, keys
:data:`JOB_PARAMETER_PREFIX` + parameter name, read by the function's ``open``; absent keys take the
defaults, as in Studio) and runs ``CREATE TEMPORARY FUNCTION ... LANGUAGE JAVA``.

Command line (``make udf-jar`` calls it)::

    clicklab udf-jar [--out build/udf/clickstream-rcf-udf.jar] [--force]
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from clicklab import settings
from clicklab.exceptions import ClicklabError

log = logging.getLogger(__name__)

#: The Java sources of the function (package ``clicklab.udf``).
SOURCE_DIR = settings.REPO / "udf" / "java"

#: The Java twin of ``RANDOM_CUT_FOREST``, for Managed Service for Apache Flink Studio and the local ``java``
#: backend: its class (named like the lab's ``RandomCutForestUDF``), the class behind ``RANDOM_CUT_FOREST_WITH_FLAG``,
#: and the jar ``clicklab udf-jar`` builds.
JAVA_UDF_CLASS = "clicklab.udf.RandomCutForestUDF"
JAVA_UDF_WITH_FLAG_CLASS = "clicklab.udf.RandomCutForestWithFlagUDF"
JAVA_UDF_JAR = settings.DEFAULT_BUILD / "udf" / "clickstream-rcf-udf.jar"

#: SQL name -> Java class of the functions the jar offers.
JAVA_FUNCTIONS = {
    settings.RANDOM_CUT_FOREST: JAVA_UDF_CLASS,
    settings.RANDOM_CUT_FOREST_WITH_FLAG: JAVA_UDF_WITH_FLAG_CLASS,
}

#: SQL name -> Java class of the keyed process table functions (the pipeline's, see the module docstring).
KEYED_FUNCTIONS = {
    settings.RANDOM_CUT_FOREST: "clicklab.udf.KeyedRandomCutForest",
    settings.ANOMALY_DECISIONS: "clicklab.udf.AnomalyDecisions",
    settings.RANDOM_CUT_FOREST_WITH_EXPLANATION: "clicklab.udf.KeyedRandomCutForestWithExplanation",
}

#: Prefix of the Flink job parameters the Java function reads: ``rcf.number_of_trees`` etc.
JOB_PARAMETER_PREFIX = "rcf."

#: Prefix of the job parameters ``ANOMALY_DECISIONS`` reads: ``threshold.floor`` etc.
THRESHOLD_PARAMETER_PREFIX = "threshold."

#: The bytecode level: Studio (Flink 1.15-1.19) runs Java 11; class files of major version 55.
JAVA_RELEASE = 11

#: Bump when the build itself changes, so cached jars are rebuilt.
_BUILD_VERSION = "1"

_DIGEST_ATTRIBUTE = "Clicklab-Inputs-SHA256"

_JDK_HINT = (
    "building the Java RANDOM_CUT_FOREST jar needs a JDK 11 or newer (javac and jar), not only a Java runtime: "
    "Debian/Ubuntu `sudo apt-get install openjdk-17-jdk-headless`, Fedora `sudo dnf install java-17-openjdk-devel`, "
    "macOS `brew install openjdk@17`, or the conda environment of environment.yml (its openjdk is a full JDK); "
    "then make sure `javac -version` works or JAVA_HOME points at the JDK"
)


def _jdk_tool(name: str) -> str:
    """:func:`clicklab.java.jdk_tool`, or :class:`ClicklabError` saying which package to install."""
    from clicklab.java import jdk_tool

    found = jdk_tool(name)
    if found is None:
        home = os.environ.get("JAVA_HOME")
        where = f": JAVA_HOME={home} has no bin/{name}" if home else " on PATH"
        raise ClicklabError(f"{name} not found{where}; {_JDK_HINT}")
    return found


def javac_command() -> str:
    """The ``javac`` to build with; raises :class:`ClicklabError` saying which package to install."""
    return _jdk_tool("javac")


def flink_jars() -> list[Path]:
    """The jars of the ``apache-flink`` package (``pyflink/lib``): the compile class path, never packed."""
    import pyflink

    lib = Path(pyflink.__file__).resolve().parent / "lib"
    jars = sorted(lib.glob("*.jar"))
    if not jars:
        raise ClicklabError(f"no Flink jars in {lib}: is the apache-flink package installed completely?")
    return jars


def rcf_core_jar() -> Path:
    """AWS's ``randomcutforest-core`` jar, as the ``jrcf`` package ships it (without importing jrcf:
    that would start a JVM)."""
    import importlib.util

    spec = importlib.util.find_spec("jrcf")
    if spec is None or not spec.submodule_search_locations:
        raise ClicklabError("the jrcf package (AWS's Random Cut Forest jars) is not installed: pip install jrcf")
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    jars = sorted(lib.glob("randomcutforest-core-*.jar"))
    if not jars:
        raise ClicklabError(f"no randomcutforest-core-*.jar in {lib}: the jrcf package looks incomplete")
    return jars[-1]


def sources() -> list[Path]:
    """The Java source files, in a stable order."""
    files = sorted(SOURCE_DIR.rglob("*.java"))
    if not files:
        raise ClicklabError(f"no Java sources under {SOURCE_DIR}")
    return files


def inputs_digest() -> str:
    """SHA-256 over what the jar is built from: the sources, the RCF jar, the Flink jars' names, the release."""
    h = hashlib.sha256(f"build {_BUILD_VERSION} release {JAVA_RELEASE}\n".encode())
    for path in sources():
        h.update(path.relative_to(SOURCE_DIR).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    rcf = rcf_core_jar()
    h.update(rcf.name.encode() + b"\0" + rcf.read_bytes() + b"\0")
    for jar in flink_jars():
        h.update(jar.name.encode() + b"\0")
    return h.hexdigest()


def manifest(jar: Path) -> dict[str, str]:
    """The main attributes of a jar's ``META-INF/MANIFEST.MF`` (continuation lines joined)."""
    with zipfile.ZipFile(jar) as zf:
        text = zf.read("META-INF/MANIFEST.MF").decode("utf-8")
    attributes: dict[str, str] = {}
    last = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            if attributes:
                break  # end of the main section
            continue
        if line.startswith(" ") and last is not None:
            attributes[last] += line[1:]
        elif ":" in line:
            last, value = line.split(":", 1)
            attributes[last] = value.strip()
    return attributes


def jar_is_current(jar: Path) -> bool:
    """True when ``jar`` exists and was built from the current inputs."""
    try:
        return manifest(jar).get(_DIGEST_ATTRIBUTE) == inputs_digest()
    except (OSError, KeyError, zipfile.BadZipFile):
        return False


def _run(command: list[str], what: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        output = (proc.stderr + proc.stdout).strip()
        raise ClicklabError(f"{what} failed (exit {proc.returncode}):\n{output}")


def _unpack_rcf(rcf: Path, classes: Path) -> None:
    """The RCF library's classes (and resources) into ``classes``, without its manifest or signatures."""
    with zipfile.ZipFile(rcf) as zf:
        for info in zf.infolist():
            name = info.filename
            upper = name.upper()
            if info.is_dir() or upper == "META-INF/MANIFEST.MF" or upper.endswith((".SF", ".RSA", ".DSA", ".EC")):
                continue
            if name.endswith("module-info.class"):
                continue
            target = classes / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))


def build_jar(out: Path | None = None, force: bool = False) -> Path:
    """Build the jar (``build/udf/clickstream-rcf-udf.jar`` by default) unless it is current; return its path.

    ``javac --release 11`` against the Flink jars and ``randomcutforest-core``; the RCF classes are
    unpacked into the jar, Flink's are not. The jar is written next to ``out`` and renamed into place,
    so a reader never sees half a jar.
    """
    out = Path(out) if out is not None else JAVA_UDF_JAR
    if not force and jar_is_current(out):
        return out
    javac = javac_command()
    jar_tool = _jdk_tool("jar")
    rcf = rcf_core_jar()
    digest = inputs_digest()
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("building %s (javac --release %s, %s) ...", out, JAVA_RELEASE, rcf.name)
    with tempfile.TemporaryDirectory(prefix=".udf-build-", dir=out.parent) as tmp:
        work = Path(tmp)
        classes = work / "classes"
        classes.mkdir()
        classpath = os.pathsep.join(str(p) for p in [*flink_jars(), rcf])
        _run([javac, "--release", str(JAVA_RELEASE), "-encoding", "UTF-8", "-Xlint:all,-processing", "-Werror",
              "-cp", classpath, "-d", str(classes), *map(str, sources())],
             f"javac of {SOURCE_DIR}")
        _unpack_rcf(rcf, classes)
        notice = classes / "META-INF" / "NOTICE-clicklab.txt"
        notice.parent.mkdir(parents=True, exist_ok=True)
        notice.write_text(
            f"clickstream-rcf-udf: the clicklab RANDOM_CUT_FOREST Flink function (Apache-2.0).\n"
            f"Includes the classes of {rcf.name}, Random Cut Forest by Amazon Web Services\n"
            f"(https://github.com/aws/random-cut-forest-by-aws), Apache License 2.0.\n",
            encoding="utf-8",
        )
        mf = work / "MANIFEST.MF"
        mf.write_text(
            "Implementation-Title: clickstream-rcf-udf\n"
            f"Clicklab-Functions: {' '.join(f'{k}={v}' for k, v in JAVA_FUNCTIONS.items())}\n"
            f"Clicklab-Java-Release: {JAVA_RELEASE}\n"
            f"Clicklab-RCF-Core: {rcf.stem}\n"
            f"{_DIGEST_ATTRIBUTE}: {digest}\n",
            encoding="utf-8",
        )
        staged = work / out.name
        _run([jar_tool, "--create", "--file", str(staged), "--manifest", str(mf), "-C", str(classes), "."],
             f"jar of {out.name}")
        os.replace(staged, out)
    return out


def job_parameters(params: Any) -> dict[str, str]:
    """The Flink job parameters that carry ``params`` (a :class:`ForestParams`) to the Java function."""
    values = {
        "number_of_trees": params.number_of_trees,
        "sub_sample_size": params.sub_sample_size,
        "time_decay": repr(float(params.time_decay)),
        "shingle_size": params.shingle_size,
        "seed": params.seed,
        "warmup": params.warmup,
    }
    return {JOB_PARAMETER_PREFIX + k: str(v) for k, v in values.items()}


def _parse_map(text: str) -> dict[str, str]:
    """Flink's map option text ``k1:v1,k2:v2`` (our keys and values have no ``,`` or ``:``)."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition(":")
        out[key.strip().strip("'\"")] = value.strip().strip("'\"")
    return out


def threshold_parameters(floor: float, adaptive: bool, options: dict[str, Any] | None = None) -> dict[str, str]:
    """The job parameters that carry the threshold (:class:`clicklab_udf.threshold.AdaptiveThreshold`'s
    ``z``, ``spike_ratio``, ``alpha``, ``smoothing``, ``sustained_z``, ``refractory``, ``run_z``,
    ``spike_floor``, ``repeat_ratio``, ``spike_ceiling`` in ``options``, the defaults for those not given) to
    ``ANOMALY_DECISIONS``."""
    known = {"z", "spike_ratio", "alpha", "smoothing", "sustained_z", "refractory", "run_z", "spike_floor",
             "repeat_ratio", "spike_ceiling"}
    unknown = sorted(set(options or {}) - known)
    if unknown:
        raise ClicklabError(f"threshold option(s) {', '.join(unknown)} unknown: the adaptive threshold takes "
                            f"{', '.join(sorted(known))}")
    import inspect

    from clicklab_udf.threshold import AdaptiveThreshold

    # every option, the defaults for those not given: registering again replaces all of them (job parameters
    # outlive a registration, so an option left out would otherwise keep the previous registration's value)
    defaults = {name: p.default for name, p in inspect.signature(AdaptiveThreshold).parameters.items() if name in known}
    values: dict[str, Any] = {"floor": repr(float(floor)), "adaptive": "true" if adaptive else "false"}
    values.update({k: repr(float(v)) for k, v in {**defaults, **(options or {})}.items()})
    return {THRESHOLD_PARAMETER_PREFIX + k: str(v) for k, v in values.items()}


def configure(t_env: Any, params: Any, jar: Path, extra: dict[str, str] | None = None) -> None:
    """Put ``jar`` on the session's ``pipeline.jars`` (kept with any others) and ``params`` in its job parameters
    (with ``extra`` ones).

    Both are read when a job starts, so this must come before the jobs that call the function.
    """
    conf = t_env.get_config()
    url = Path(jar).resolve().as_uri()
    # ';'-separated as we write it, or a list as Flink writes it back after CREATE FUNCTION ... USING JAR
    text = conf.get("pipeline.jars", "").strip().strip("[]")
    jars = [j.strip().strip("'\"") for j in text.replace(",", ";").split(";") if j.strip()]
    if url not in jars:
        conf.set("pipeline.jars", ";".join([*jars, url]))
    current = _parse_map(conf.get("pipeline.global-job-parameters", ""))
    current.update(job_parameters(params))
    current.update(extra or {})
    conf.set("pipeline.global-job-parameters", ",".join(f"{k}:{v}" for k, v in current.items()))


def _create(t_env: Any, functions: dict[str, str]) -> None:
    from clicklab import flink

    for name, cls in functions.items():
        flink.execute(t_env, f"DROP TEMPORARY FUNCTION IF EXISTS {name}")
        flink.execute(t_env, f"CREATE TEMPORARY FUNCTION {name} AS '{cls}' LANGUAGE JAVA")


def register(t_env: Any, params: Any, jar: Path | None = None, names: tuple[str, ...] | None = None) -> Path:
    """Register the Java scalar ``RANDOM_CUT_FOREST`` and ``RANDOM_CUT_FOREST_WITH_FLAG`` (or only ``names`` of
    them) in a session; return the jar.

    The jar is built first if it is missing or out of date. Registering again replaces the functions
    (their forests start afresh in the next job).
    """
    jar = build_jar(jar)
    configure(t_env, params, jar)
    _create(t_env, {k: v for k, v in JAVA_FUNCTIONS.items() if names is None or k in names})
    return jar


def register_keyed(t_env: Any, params: Any, floor: float, adaptive: bool,
                   threshold_options: dict[str, Any] | None = None, jar: Path | None = None) -> Path:
    """Register the keyed ``RANDOM_CUT_FOREST`` and ``ANOMALY_DECISIONS`` (:data:`KEYED_FUNCTIONS`); return the jar.

    ``params`` (a :class:`ForestParams`) and the threshold go to the jobs as job parameters; the call's own
    arguments (``numberOfTrees => 100`` ...) still win over them.
    """
    jar = build_jar(jar)
    configure(t_env, params, jar, threshold_parameters(floor, adaptive, threshold_options))
    _create(t_env, KEYED_FUNCTIONS)
    return jar
