"""``kdrun <command>``: one module per command besides ``train`` (whose task is ``kdrun.train``).

Each module has ``main(args)``; ``kdrun.cli`` dispatches to it.
"""

COMMANDS = {
    "train": "distil a teacher into a student; report it against the teacher and a scratch student",
    "report": "summarise every run under a folder: table, summary.csv/.md, curves, heatmap, --html page",
    "export": "ship a run's distilled student as ONNX / TorchScript: parity check, latency, model card",
    "export-soft-labels": "write the teacher's train-split logits to out=FILE, for strategy=soft_labels",
    "regress": "run recipes (files or folders) and check the metrics each must reach; exit 1 on regression",
    "layers": "list a model's layer names and output shapes (for strategy.pairs of hints/attention)",
    "models": "list the model names teacher=/student= configs and teacher.name= accept",
    "runs": "list the runs under a folder (filter by config), or compare runs side by side",
    "ship": "which student to ship: accuracy against cost over a family of runs, the frontier, a pick",
    "tune": "search T, alpha (and any key) for the best val top-1 within a budget; prune bad trials early",
    "cache": "list the artefact cache (teachers, baselines, logits): size, age, origin; verify; clear",
}
