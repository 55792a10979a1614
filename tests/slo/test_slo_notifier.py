"""The built-in notifier's parts: the incident policy (pure), the Alertmanager payload, HTTP
delivery with retries against a real local receiver, the ``notifier:`` settings and
``cvmon silence``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from monitor.errors import ConfigError
from monitor.server.cli._root import cli
from monitor.server.settings import Settings
from monitor.server.slo.burnrate import WindowCounts, evaluate_alerts
from monitor.server.slo.notifier import GroupKey, Incident, advance, build_payload, fingerprint, post
from monitor.server.slo.receivers import NotifierConfig, Receiver, load_notifier, with_env
from monitor.server.slo.spec import load_slos
from tests.e2e.webhook import WebhookReceiver, closed_port_url
from tests.slo.golden import REPO

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
(SLO,) = load_slos("slos:\n  - {name: acc, model: digits, sli: accuracy, objective: 0.95, window: 30d}\n")
PAGE_1H, PAGE_6H = SLO.alerts[0], SLO.alerts[1]
CONFIG = NotifierConfig(page=Receiver("page", "http://127.0.0.1:9/hook"))
MIN = timedelta(minutes=1)


def firing(at: datetime = NOW, *, sent: datetime | None = None) -> Incident:
    return Incident("firing", at, ((3600, 300),), last_sent=sent)


@pytest.mark.parametrize(
    ("before", "alerts", "config", "after", "action"),
    [
        pytest.param(None, [], CONFIG, None, None, id="quiet-stays-quiet"),
        pytest.param(None, [PAGE_1H], CONFIG, firing(), "firing", id="first-burn-opens-an-incident-and-pages"),
        pytest.param(firing(sent=NOW), [PAGE_1H], CONFIG, firing(sent=NOW), None, id="still-firing-no-repeat"),
        pytest.param(
            firing(sent=NOW), [PAGE_1H, PAGE_6H], CONFIG,
            replace(firing(sent=NOW), alerts=((3600, 300), (21600, 1800))), None,
            id="a-second-alert-joins-without-a-new-page",
        ),
        pytest.param(firing(), [PAGE_1H], CONFIG, firing(), "firing", id="unsent-firing-is-sent-next-time"),
        pytest.param(
            firing(sent=NOW - 120 * MIN), [PAGE_1H], replace(CONFIG, repeat_interval_s=7200),
            firing(sent=NOW - 120 * MIN), "firing", id="repeat-interval-elapsed",
        ),
        pytest.param(
            firing(sent=NOW - 119 * MIN), [PAGE_1H], replace(CONFIG, repeat_interval_s=7200),
            firing(sent=NOW - 119 * MIN), None, id="repeat-interval-not-yet",
        ),
        pytest.param(
            firing(sent=NOW - MIN), [], CONFIG, replace(firing(sent=NOW - MIN), state="resolved", resolved_at=NOW),
            "resolved", id="stops-burning-resolves",
        ),
        pytest.param(
            firing(), [], CONFIG, replace(firing(), state="resolved", resolved_at=NOW), None,
            id="never-sent-resolves-silently",
        ),
        pytest.param(
            firing(sent=NOW - MIN), [], replace(CONFIG, send_resolved=False),
            replace(firing(sent=NOW - MIN), state="resolved", resolved_at=NOW), None, id="send-resolved-off",
        ),
        pytest.param(
            replace(firing(sent=NOW - 5 * MIN), state="resolved", resolved_at=NOW - MIN), [], CONFIG,
            replace(firing(sent=NOW - 5 * MIN), state="resolved", resolved_at=NOW - MIN), "resolved",
            id="undelivered-resolve-is-retried",
        ),
        pytest.param(
            replace(firing(NOW - 60 * MIN, sent=NOW - 60 * MIN), state="resolved", resolved_at=NOW - 30 * MIN,
                    resolved_sent=NOW - 30 * MIN),
            [PAGE_1H], CONFIG, firing(), "firing", id="burning-again-is-a-new-incident",
        ),
    ],
)  # fmt: skip
def test_incident_policy(before, alerts, config, after, action):
    assert advance(before, alerts, NOW, config) == (after, action)


def test_payload_is_alertmanager_webhook_v4():
    counts = {w: WindowCounts(100, 100) for w in (300, 1800, 3600, 7200, 21600, 86400, 259200)}
    decisions = [d for d in evaluate_alerts(SLO.objective, SLO.alerts, counts) if d.alert.severity == "page"]
    key = GroupKey("acc", "v3", "page")
    incident = Incident("firing", NOW, ((3600, 300), (21600, 1800)))
    body = build_payload(model="digits", slo=SLO, key=key, status="firing", incident=incident, decisions=decisions,
                         receiver=CONFIG.page, external_url="https://cvmon.example")  # type: ignore[arg-type]  # fmt: skip
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "page"
    assert body["groupKey"] == '{}/{severity="page"}:{model="digits", slo="acc", version="v3"}'
    assert body["groupLabels"] == {"model": "digits", "slo": "acc", "version": "v3"}
    assert body["commonLabels"] == {
        "alertname": "CvmonErrorBudgetBurn", "slo": "acc", "model": "digits", "severity": "page", "version": "v3",
    }  # fmt: skip
    assert [a["labels"]["long_window"] for a in body["alerts"]] == ["1h", "6h"]
    assert {a["fingerprint"] for a in body["alerts"]} == {fingerprint(a["labels"]) for a in body["alerts"]}
    assert len({a["fingerprint"] for a in body["alerts"]}) == 2
    first = body["alerts"][0]
    assert first["startsAt"] == "2026-11-20T10:00:00Z" and first["endsAt"] == "0001-01-01T00:00:00Z"
    assert first["annotations"]["burn_rate"] == "20" and "runbook" in first["annotations"]
    assert first["generatorURL"] == body["externalURL"] == "https://cvmon.example"

    resolved = build_payload(model="digits", slo=SLO, key=key, status="resolved",
                             incident=replace(incident, state="resolved", resolved_at=NOW + 40 * MIN),
                             decisions=[], receiver=CONFIG.page)  # type: ignore[arg-type]  # fmt: skip
    assert [a["status"] for a in resolved["alerts"]] == ["resolved", "resolved"]
    assert {a["endsAt"] for a in resolved["alerts"]} == {"2026-11-20T10:40:00Z"}
    assert [a["fingerprint"] for a in resolved["alerts"]] == [a["fingerprint"] for a in body["alerts"]]


@pytest.mark.parametrize(
    ("status", "attempts", "error"),
    [
        pytest.param(200, 1, None, id="delivered"),
        pytest.param(503, 3, "HTTP 503 Service Unavailable", id="5xx-retried"),
        pytest.param(429, 3, "HTTP 429 Too Many Requests", id="429-retried"),
        pytest.param(400, 1, "HTTP 400 Bad Request", id="4xx-not-retried"),
    ],
)
def test_post_retries_what_may_pass_later(status, attempts, error):
    sleeps: list[float] = []
    with WebhookReceiver(status=status) as hook:
        receiver = Receiver("page", hook.url, headers=(("Authorization", "Bearer s3cret"),))
        got = post(receiver, {"status": "firing"}, retries=2, backoff_seconds=0.5, sleep=sleeps.append)
    assert got == error and hook.attempts == attempts
    assert sleeps == [0.5, 1.0][: attempts - 1]
    if status == 200:
        (received,) = hook.received
        assert received.body == {"status": "firing"} and received.headers["Authorization"] == "Bearer s3cret"
        assert received.headers["Content-Type"] == "application/json"


def test_post_to_a_receiver_that_is_down():
    sleeps: list[float] = []
    error = post(
        Receiver("ticket", closed_port_url(), timeout_seconds=2),
        {},
        retries=1,
        backoff_seconds=0.1,
        sleep=sleeps.append,
    )
    assert error is not None and "refused" in error.lower() and sleeps == [0.1]


# --------------------------------------------------------------------------------------------
# settings


def test_notifier_settings_from_yaml_and_env(tmp_path):
    cfg = tmp_path / "cvmon.yaml"
    cfg.write_text("""\
slos:
  - {name: acc, model: digits, sli: accuracy, objective: 0.95, window: 30d}
notifier:
  page:
    url: https://pager.example/hook
    headers: {Authorization: Bearer abc}
  repeat_interval: 4h
""")
    s = Settings.load({"CVMON_CONFIG": str(cfg), "CVMON_NOTIFIER_TICKET_URL": "http://tickets.local/hook"})
    assert [slo.name for slo in s.slos] == ["acc"] and s.slos[0].line == 2
    assert s.notifier == NotifierConfig(
        page=Receiver("page", "https://pager.example/hook", headers=(("Authorization", "Bearer abc"),)),
        ticket=Receiver("ticket", "http://tickets.local/hook"),
        repeat_interval_s=4 * 3600,
    )
    assert "abc" not in repr(s) and "abc" not in repr(s.notifier)
    env_only = Settings.load({"CVMON_CONFIG": str(cfg), "CVMON_NOTIFIER_PAGE_URL": "http://other/hook"})
    assert env_only.notifier is not None and env_only.notifier.page is not None
    assert env_only.notifier.page.url == "http://other/hook" and env_only.notifier.page.headers  # headers kept
    assert with_env(None, {}) is None


def test_example_config_loads_as_settings():
    s = Settings.load({"CVMON_CONFIG": str(REPO / "examples" / "cvmon.yaml")})
    assert len(s.slos) == 15 and s.notifier is None  # the notifier example is commented out


def test_example_notifier_block_is_valid():
    """The commented ``notifier:`` example in examples/cvmon.yaml, uncommented, loads."""
    lines = (REPO / "examples" / "cvmon.yaml").read_text("utf-8").splitlines()
    start = lines.index("# notifier:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    config = load_notifier("\n".join(block) + "\n", source="examples/cvmon.yaml")
    assert config is not None and config.page is not None and config.ticket is not None
    assert config.repeat_interval_s == 4 * 3600 and config.page.headers == (("Authorization", "Bearer <token>"),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("notifier:\n  page: {url: ftp://x}\n", "cvmon.yaml:2: notifier.page.url must be an http", id="bad-url"),
        pytest.param("notifier:\n  page: {timeout_seconds: 3}\n", "cvmon.yaml:2: notifier.page needs url", id="no-url"),
        pytest.param("notifier:\n  pager: {url: http://x}\n", "did you mean 'page'", id="typo-did-you-mean"),
        pytest.param("notifier:\n  group_by_version: false\n",
                     "cvmon.yaml:2: notifier.group_by_version moved to slo_alerting.per_version", id="moved-key"),
        pytest.param("notifier:\n  page: {url: http://x}\n  repeat_interval: 10s\n", "cvmon.yaml:3: notifier.repeat_interval must be at least 1m", id="repeat-too-short"),
        pytest.param("notifier:\n  send_resolved: maybe\n", "cvmon.yaml:2: notifier.send_resolved must be true or false", id="not-a-bool"),
    ],
)  # fmt: skip
def test_notifier_errors_point_at_the_line(text, message):
    with pytest.raises(ConfigError, match=message):
        load_notifier(text)


def test_time_slice_slo_needs_the_hourly_window(tmp_path):
    cfg = tmp_path / "cvmon.yaml"
    cfg.write_text(
        "windows: [1d, 7d]\nslos:\n  - {name: cal, model: m, sli: ece, objective: 0.95, window: 30d, threshold: 0.05,\n"
        "     alerting: {alerts: [{severity: ticket, long_window: 1d, short_window: 2h, burn_rate: 1}]}}\n"
    )
    with pytest.raises(ConfigError, match=r"cvmon.yaml:3: SLO 'cal' \(ece\) counts 1h evaluation windows"):
        Settings.load({"CVMON_CONFIG": str(cfg)})


def test_bad_slo_in_settings_points_at_the_line(tmp_path):
    cfg = tmp_path / "cvmon.yaml"
    cfg.write_text(
        "database_url: sqlite:///x.db\nslos:\n  - name: acc\n    model: m\n    sli: accuracy\n    objective: 95\n    window: 30d\n"
    )
    with pytest.raises(ConfigError, match=r"cvmon\.yaml:6: objective must be a fraction"):
        Settings.load({"CVMON_CONFIG": str(cfg)})


# --------------------------------------------------------------------------------------------
# cvmon silence


def test_silence_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CVMON_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    (tmp_path / "cvmon.yaml").write_text(
        "slos:\n  - {name: acc, model: digits, sli: accuracy, objective: 0.95, window: 30d}\n"
    )
    monkeypatch.setenv("CVMON_CONFIG", str(tmp_path / "cvmon.yaml"))
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, list(args), prog_name="cvmon", catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    for args in (["silence"], ["silence", "add"], ["silence", "list"], ["silence", "expire"]):
        assert "Usage: cvmon silence" in run(*args, "--help")
    run("db", "upgrade")
    run("models", "register", "digits", "--task", "classification", "--classes", "0,1")
    assert "no active silences" in run("silence", "list")
    assert "has no SLO 'acc-typo'" in run(
        "silence", "add", "--model", "digits", "--slo", "acc-typo", "--for", "2h", code=1
    )
    assert "not a duration" in run("silence", "add", "--model", "digits", "--for", "2 hours", code=2)
    out = run(
        "silence",
        "add",
        "--model",
        "digits",
        "--slo",
        "acc",
        "--for",
        "2h",
        "--comment",
        "retraining",
        "--by",
        "ana",
    )
    silence_id = out.strip().splitlines()[-1]
    listing = run("silence", "list")
    assert silence_id in listing and "acc" in listing and "retraining" in listing and "active" in listing
    assert f"expired silence {silence_id}" in run("silence", "expire", silence_id)
    assert "no active silences" in run("silence", "list")
    assert silence_id in run("silence", "list", "--all")
    assert "no active silence" in run("silence", "expire", silence_id, code=1)


# --------------------------------------------------------------------------------------------
# hysteresis: the notifier holds an oscillating burn as the rules' keep_firing_for does


def _notifications(slo, scenario) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """(minute, action) of every page notification for v2 when the notifier's incident policy
    (``keep_firing`` then ``advance``) runs every minute on the scenario's counts."""
    from monitor.server.slo.burnrate import required_windows
    from monitor.server.slo.notifier import keep_firing
    from tests.slo.promtool_cases import _Counts

    counts = _Counts(scenario)
    pages = [a for a in slo.alerts if a.severity == "page"]
    incident: Incident | None = None
    sent = []
    for minute in range(scenario.minutes):
        now = NOW + minute * MIN
        sums = {w: counts.window(minute, w, "v2") for w in required_windows(slo.alerts)}
        conditions = {(d.alert.long_window_s, d.alert.short_window_s): d.firing
                      for d in evaluate_alerts(slo.objective, slo.alerts, sums)}  # fmt: skip
        firing, held = keep_firing(pages, conditions, incident, now)
        incident, action = advance(incident, firing, now, CONFIG)
        if incident is not None:
            incident = replace(incident, held=held)
        if action is not None:
            sent.append((minute, action))
            assert incident is not None
            incident = replace(incident, last_sent=now) if action == "firing" else replace(incident, resolved_sent=now)
    return sent


def test_the_notifier_holds_an_oscillating_burn_like_the_rules(example_slos):
    from tests.slo.promtool_cases import oscillating, timeline

    slo = next(s for s in example_slos if s.name == "digits-latency")
    scenario = oscillating(slo)
    sent = _notifications(slo, scenario)
    # one page, one resolved, at the minutes the rules' ALERTS series starts and stops
    pages = [a for a in slo.alerts if a.severity == "page"]
    on = [any(("v2", a) in fired for a in pages) for fired in timeline(slo, scenario)]
    assert sent == [(on.index(True), "firing"), (len(on) - on[::-1].index(True), "resolved")]

    bare = replace(slo, alerts=tuple(replace(a, keep_firing_for_s=0) for a in slo.alerts))
    flapping = _notifications(bare, scenario)
    assert len(flapping) >= 6 and [a for _, a in flapping[:4]] == ["firing", "resolved", "firing", "resolved"]


def test_the_hysteresis_state_survives_the_database_row():
    from monitor.server.slo.notifier import _held, _is_held, _stored_alerts

    quiet = NOW - 2 * MIN
    incident = Incident("firing", NOW - 30 * MIN, ((3600, 300), (21600, 1800)), held=((3600, 300, quiet),))
    stored = _stored_alerts(incident)
    assert stored == [[3600, 300, True, quiet.isoformat()], [21600, 1800, False, None]]
    assert tuple(_held(a, "firing") for a in stored if _is_held(a, "firing")) == incident.held
    # a row written before the hysteresis: every alert of a firing incident is held, none quiet
    assert [_is_held([3600, 300], s) for s in ("firing", "resolved")] == [True, False]
    assert _held([3600, 300], "firing") == (3600, 300, None)
