"""``cvmon demo``: a realistic, self-contained tour on the embedded database."""

from __future__ import annotations

from pathlib import Path

import click

from monitor.server.cli._common import cvmon_command, load_settings


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the API listens on.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--duration", default=120.0, show_default=True, type=click.FloatRange(min=1), help="Seconds of camera traffic.")
@click.option("--rate", default=40.0, show_default=True, type=click.FloatRange(min=1), help="Predictions per second, all cameras together.")
@click.option("--simulated-hours", default=6.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Hours of traffic the run stands for: timestamps are compressed so hourly metric windows fill up.")  # fmt: skip
@click.option("--label-share", default=0.6, show_default=True, type=click.FloatRange(0, 1),
              help="Share of predictions that get ground truth, after a simulated 15-90 minute delay.")  # fmt: skip
@click.option("--keep-serving/--no-keep-serving", default=True, show_default=True, help="Keep the API up after the traffic, until Ctrl-C.")
@click.option("--train-cache/--no-train-cache", default=True, show_default=True,
              help="Reuse the trained model from ~/.cache/cvmon/demo.")  # fmt: skip
def demo(host: str, port: int, duration: float, rate: float, simulated_hours: float, label_share: float,
         keep_serving: bool, train_cache: bool) -> None:  # fmt: skip
    """Run cvmon with a real model and realistic traffic.

    Migrates the database (CVMON_DATABASE_URL, default ./cvmon.db), creates an API key, serves
    the API, trains a digits classifier (scikit-learn's bundled images) and exports it to ONNX,
    then streams its predictions, hidden-layer embeddings and latencies from four cameras
    through the onnxruntime adapter and the SDK, with delayed ground truth for a share of them.
    Midway, cam-3 drifts (rotation, blur, over-exposure) and its accuracy drops. At the end it
    prints where to look.
    """
    import os

    from monitor.server.demo.run import DemoOptions, run

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cvmon" / "demo"
    root = click.get_current_context().find_root().command
    has_report = isinstance(root, click.Group) and "report" in root.commands
    cvmon = cvmon_command()
    options = DemoOptions(
        host=host, port=port, duration=duration, rate=rate, simulated_hours=simulated_hours,
        label_share=label_share, keep_serving=keep_serving, train_cache=cache if train_cache else None,
        report_command=f"{cvmon} report --model digits" if has_report else None,
    )  # fmt: skip
    from monitor.server.cli._warm import start_in_background

    start_in_background()  # the kernels the demo's evaluation and a first `cvmon eval` use
    try:
        run(options, load_settings(), click.echo)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


commands = [demo]
