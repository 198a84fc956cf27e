"""Which registered weight files each metric, method and job needs (for `misato weights list` and
`misato weights fetch --for JOB`).

Everything here is read from its owner: metrics' files from `evaluators.scoring.metric_weight_keys` under each
protocol, methods' from the inpainter classes' `weights`, jobs' from what they run (the demo's default
methods and metrics, the reproduce presets' protocols, methods and training stages). App layer: imports the
evaluators and the baselines.
"""

from __future__ import annotations

from collections import defaultdict

JOBS: tuple[str, ...] = ("demo", "score", "table1", "table2")


def metric_needs() -> dict[str, list[str]]:
    """{key: ["fid (comod, clean)", ...]}: the scored metrics that need each file, with their protocols."""
    from evaluators.metrics import SCORED
    from evaluators.protocols import PROTOCOLS
    from evaluators.scoring import metric_weight_keys

    protocols: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for protocol in PROTOCOLS.values():
        for metric in SCORED:
            for key in metric_weight_keys(metric, protocol):
                protocols[key][metric].append(protocol.name)
    return {key: [f"{metric} ({', '.join(names)})" for metric, names in by_metric.items()]
            for key, by_metric in protocols.items()}


def method_needs() -> dict[str, list[str]]:
    """{key: [method, ...]}: the built-in inpainters whose class lists each file."""
    from baselines.registry import BUILTIN, REGISTRY

    methods: dict[str, list[str]] = defaultdict(list)
    for name in BUILTIN:
        for key in REGISTRY.get(name).weights:
            methods[key].append(name)
    return dict(methods)


def _metric_keys(protocol_name: str, metrics: tuple[str, ...] | None = None) -> dict[str, str]:
    from evaluators.protocols import get_protocol
    from evaluators.scoring import ScoreConfig, metric_weight_keys

    protocol = get_protocol(protocol_name)  # an unknown name: a KeyError listing the known ones
    chosen = ScoreConfig(protocol=protocol_name, metrics=metrics).selected()
    keys: dict[str, list[str]] = defaultdict(list)
    for metric in chosen:
        for key in metric_weight_keys(metric, protocol):
            keys[key].append(metric)
    return {key: f"metrics {', '.join(names)} ({protocol_name})" for key, names in keys.items()}


def _method_keys(specs: dict[str, str]) -> dict[str, str]:
    """{key: "method LABEL"} for {label: method spec}."""
    from baselines.registry import REGISTRY

    keys: dict[str, list[str]] = defaultdict(list)
    for label, spec in specs.items():
        for key in REGISTRY.get(spec).weights:
            keys[key].append(label)
    return {key: f"method {', '.join(labels)}" for key, labels in keys.items()}


def job_needs(job: str, protocol: str | None = None) -> dict[str, str]:
    """{key: why} for the files `job` uses (one of JOBS): demo (its default metrics, and lama, which joins the
    classical methods when its file is present), score (the default metrics under `protocol`, default the
    default protocol), table1 / table2 (the paper presets: their protocol's default metrics, their methods, and
    for table2 the decoder loss's LPIPS files)."""
    from misato.defaults import PROTOCOL

    if job not in JOBS:
        raise ValueError(f"--for {job!r}: expected one of {', '.join(JOBS)}")
    if job in ("demo", "score"):
        needs = _metric_keys(protocol or PROTOCOL)
        if job == "demo":
            from misato.cli.demo import LAMA_KEY

            needs[LAMA_KEY] = "method lama (joins the demo when present)"
        return needs
    if job == "table1":
        from misato.jobs.reproduce.table1 import load_preset

        preset = load_preset("paper")
        return {**_metric_keys(preset["protocol"]),
                **_method_keys({label: method["spec"] for label, method in preset["methods"].items()})}
    from baselines.asuka.training import config_stage
    from baselines.asuka.training.config import build_config
    from misato.lpips_network import LPIPS_WEIGHTS
    from misato.jobs.reproduce.table2 import load_preset as load_table2

    preset = load_table2("paper")
    needs = {**_metric_keys(preset["protocol"]), **_method_keys({"ASUKA-SD": "asuka-sd"})}
    for name, stage in preset["stages"].items():
        if config_stage(stage["stage"]) != "decoder":
            continue
        config = build_config("decoder", stage.get("presets", []), sets=stage.get("sets", []))
        if config.lpips_weight:
            for key in LPIPS_WEIGHTS[config.lpips_net]:
                needs.setdefault(key, f"decoder training loss (stage {name})")
    return needs
