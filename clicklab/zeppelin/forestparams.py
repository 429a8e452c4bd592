"""The forest's parameters in the exported lab note (``clicklab export-zeppelin --params lab|default``).

In Studio, ``RANDOM_CUT_FOREST`` is the jar's scalar function (``clicklab.udf.RandomCutForestUDF``). It takes
its forest's parameters when a job starts, from the Flink job parameters ``rcf.*``
(:func:`clicklab.javaudf.job_parameters`); without them it takes Kinesis Data Analytics' defaults, 256
samples, and a site's forest then scores 0 for its first ``1 + 256 // 4 = 65`` windows of 10 seconds
(10 min 50 s). The lab sends its 30-second burst a minute or two after the traffic starts: with those
defaults it is never scored. So the note sets the parameters itself, from a named set of
:data:`clicklab_udf.forest.PRESETS` (``lab``, the SQL lab's ``100, 12, 100000, 1``, by default for Studio):

* at the top of the scoring notebook (``08``, the one that fills ``destinationstream``), after its heading,
  a ``%md`` paragraph naming the set and a ``%flink.pyflink`` paragraph that puts it in the session's
  ``pipeline.global-job-parameters`` (Zeppelin's ``%flink.ssql`` ``SET`` accepts only ``table.*`` options;
  Flink merges the table configuration into the job's when it submits one, so #8's job reads them);
* right after the paragraph that writes the scores (#8's ``INSERT INTO destinationstream``), a ``%md``
  paragraph saying how long each site's forest warms up before it scores: ``1 + sub_sample_size // 4``
  windows of 10 seconds (``ForestParams.warmup_points``).

For the ``local`` target the paragraphs are written only when ``--params`` is given: the local note's
``#2`` registers clicklab's functions with their own defaults, and the ``%flink.pyflink`` paragraph
re-configures them with :func:`clicklab.javaudf.configure` (which keeps the threshold's job parameters).

The numbers the paragraphs write come from :class:`~clicklab_udf.forest.ForestParams`, never typed here.
"""

from __future__ import annotations

from clicklab import javaudf, settings
from clicklab.zeppelin.note import ZeppelinError
from clicklab_udf.forest import PRESETS, ForestParams

#: The named parameter sets ``--params`` offers (those of :data:`clicklab_udf.forest.PRESETS`).
PARAMETER_SETS: tuple[str, ...] = tuple(PRESETS)

#: The set each target writes when ``--params`` is not given (``None``: no parameter paragraphs).
DEFAULT_PARAMS: dict[str, str | None] = {"studio": "lab", "local": None}

#: The stream the scoring notebook fills: the parameter paragraphs go into its notebook.
SCORES_STREAM = "destinationstream"

#: The lab sends its burst "a minute or two" after the traffic starts: a warm-up up to this long lets it be scored.
BURST_AFTER_SECONDS = 60

#: The job parameter that carries the ``rcf.*`` values (Flink's ``PipelineOptions.GLOBAL_JOB_PARAMETERS``).
JOB_PARAMETERS_OPTION = "pipeline.global-job-parameters"

_ABOUT = {
    "lab": "the SQL lab's `RANDOM_CUT_FOREST(CURSOR(...), {trees}, {samples}, {decay}, {shingle})`",
    "default": "Kinesis Data Analytics' defaults, which the function also takes when no job parameter is set",
}


def preset(name: str) -> ForestParams:
    """The named parameter set; :class:`ZeppelinError` naming ``--params`` and the choices if unknown."""
    if name not in PRESETS:
        raise ZeppelinError(f"--params {name!r}: choose one of {', '.join(PARAMETER_SETS)}")
    return ForestParams.preset(name)


def describe(params: ForestParams) -> str:
    """The parameters in words.

    >>> describe(ForestParams.preset("lab"))
    '100 trees, 12 samples, time decay 100000, shingle 1'
    """
    return (f"{params.number_of_trees} trees, {params.sub_sample_size} samples, "
            f"time decay {params.time_decay:g}, shingle {params.shingle_size}")


def duration(seconds: int) -> str:
    """A duration as the note writes it.

    >>> duration(40), duration(650), duration(120)
    ('40 s', '10 min 50 s', '2 min')
    """
    minutes, rest = divmod(int(seconds), 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def warmup_seconds(params: ForestParams) -> int:
    """How much of a site's traffic its forest needs before it scores: its warm-up windows x the window length."""
    return params.warmup_points * settings.WINDOW_SECONDS


def job_parameters_value(params: ForestParams) -> str:
    """``rcf.number_of_trees:100,rcf.sub_sample_size:12,...``: the map option's text, as Flink parses it."""
    return ",".join(f"{key}:{value}" for key, value in javaudf.job_parameters(params).items())


def parameters_markdown(name: str, target: str) -> str:
    """The ``%md`` paragraph before the parameters' code: which set, where it goes, when to run it."""
    params = preset(name)
    about = _ABOUT.get(name, f"the parameter set `{name}`").format(
        trees=params.number_of_trees, samples=params.sub_sample_size, decay=f"{params.time_decay:g}",
        shingle=params.shingle_size)
    if target == "studio":
        where = ("The jar's `RANDOM_CUT_FOREST` reads them when #8's job starts, as the Flink job parameters "
                 "`rcf.*`; the next paragraph puts them in the session's "
                 f"`{JOB_PARAMETERS_OPTION}` (a `%flink.ssql` `SET` takes only `table.*` options).")
    else:
        where = ("The keyed `RANDOM_CUT_FOREST` reads them when #8's job starts, as the Flink job parameters "
                 "`rcf.*`; the next paragraph sets them (`clicklab.javaudf.configure`, which keeps the "
                 "threshold's).")
    return (f"%md\n**The forest's parameters** (`clicklab export-zeppelin --params {name}`): {describe(params)}, "
            f"{about}. {where} Run it before #8: a running job keeps the parameters it started with.")


def parameters_code(name: str, target: str) -> str:
    """The ``%flink.pyflink`` paragraph that sets the parameters for the jobs started after it."""
    params = preset(name)
    if target == "studio":
        return (f"%flink.pyflink\n"
                f"# The forest's parameters (--params {name}: {describe(params)}),\n"
                f"# as the job parameters the jar's RANDOM_CUT_FOREST reads when a job starts\n"
                f"st_env.get_config().set(\n"
                f"    \"{JOB_PARAMETERS_OPTION}\",\n"
                f"    \"{job_parameters_value(params)}\")")
    return (f"%flink.pyflink\n"
            f"# needs the clicklab package in the Flink interpreter's Python (pip install -e <this repo>)\n"
            f"from clicklab import javaudf\n"
            f"from clicklab_udf.forest import ForestParams\n\n"
            f"javaudf.configure(st_env, ForestParams.preset(\"{name}\"), javaudf.build_jar())")


def warmup_markdown(name: str) -> str:
    """The ``%md`` paragraph after #8: how long each site's forest warms up, and whether the lab's burst is scored."""
    params = preset(name)
    windows, seconds = params.warmup_points, warmup_seconds(params)
    rule = (f" (1 + {params.sub_sample_size} // 4, as AWS's library does)"
            if windows == 1 + params.sub_sample_size // 4 else "")
    text = (f"%md\n**Warm-up** (`--params {name}`, {params.sub_sample_size} samples): each site's forest scores 0 "
            f"for the first {windows} windows of that site that #8 reads{rule}, {duration(seconds)} of its traffic "
            f"in {settings.WINDOW_SECONDS}-second windows; from its window {windows + 1} on, every window is scored. ")
    if seconds <= BURST_AFTER_SECONDS:
        return text + ("The lab's 30-second burst, sent a minute or two after the traffic starts, comes after the "
                       "warm-up and is scored.")
    text += ("The lab's 30-second burst, sent a minute or two after the traffic starts, falls inside it: its windows "
             f"score 0, are never anomalies and send no alert. Send the burst after {duration(seconds)} of traffic")
    shorter = min(PARAMETER_SETS, key=lambda other: warmup_seconds(preset(other)))
    if shorter == name:
        return text + "."
    return text + f", or export with `--params {shorter}` (a warm-up of {duration(warmup_seconds(preset(shorter)))})."


def scoring_paragraphs(name: str, target: str) -> tuple[list[str], list[str]]:
    """The paragraphs to put before the scoring notebook's steps (after its heading) and right after #8."""
    return [parameters_markdown(name, target), parameters_code(name, target)], [warmup_markdown(name)]
