"""The on-call kit: alert rules (promtool), their runbooks, the dashboard, the README's metrics.

- `promtool check rules` and `promtool test rules` pass; every alert carries a severity, a
  summary and a runbook_url, and its unit tests hold a case where it fires and one where it does
  not. promtool comes from Debian's `prometheus` package (.ci/install-promtool, run by `.ci/run`
  and `make test`); without it this test skips, unless CI or VERIHOOK_REQUIRE_PROMTOOL=1 demand it.
- Every runbook_url names a section of docs/RUNBOOK.md with meaning, confirm, fix and escalate,
  and every `verihook …` command the runbook shows is a real command (run with `--help`).
- Every metric the rules, their tests and the dashboard name is one verihook exports (read from a
  real `/metrics`), and the README lists every metric receiver/metrics.py defines.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from app import cli
from tests.test_deploy import resolve

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "verihook.json"
RUNBOOK = ROOT / "docs" / "RUNBOOK.md"
README = ROOT / "README.md"
SEVERITIES = {"critical", "warning"}
RUNBOOK_PARTS = ("**Meaning.**", "**Confirm.**", "**Fix.**", "**Escalate**")
METRIC = re.compile(r"\bverihook_[a-z0-9_]+")
"""A verihook metric name inside a PromQL expression or series selector."""


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def rule_tests() -> list[dict[str, Any]]:
    """The test cases of alerts.test.yml."""
    return yaml.safe_load(RULE_TESTS.read_text())["tests"]


def promtool() -> str:
    """promtool's path; skips when it is missing unless CI or VERIHOOK_REQUIRE_PROMTOOL."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("VERIHOOK_REQUIRE_PROMTOOL") == "1" or os.environ.get("CI"):
        pytest.fail("promtool is required here: run .ci/install-promtool")
    pytest.skip("promtool is not installed (.ci/install-promtool installs it)")


# ---- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]],
    ids=["check", "test"],
)
def test_promtool_accepts_the_rules_and_their_unit_tests(args: list[str]) -> None:
    done = subprocess.run(
        [promtool(), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_has_a_severity_a_summary_and_a_runbook() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)) >= 12
    for rule in alerts():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/RUNBOOK.md#{rule['alert'].lower()}", rule["alert"]


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases: dict[str, set[bool]] = {}
    for case in rule_tests():
        for check in case["alert_rule_test"]:
            cases.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    for rule in alerts():
        assert cases.get(rule["alert"]) == {True, False}, rule["alert"]
    assert set(cases) <= {rule["alert"] for rule in alerts()}


def test_the_issue_s_alerts_are_all_there() -> None:
    """What on call must act on (issue 11), each by the metric it watches."""
    watched = {
        "verihook_deliveries_total": "ingest 5xx/503",
        "verihook_auth_failures_total": "authentication failures per provider",
        "verihook_events": "failed/quarantined growing",
        "verihook_oldest_ready_event_age_seconds": "workers behind",
        "verihook_scheduler_leader": "no scheduler leader",
        "verihook_polls_total": "polls failing per provider",
        "verihook_overdue_sessions": "overdue growing",
        "verihook_notifications_exhausted_total": "notifications exhausted",
        "verihook_audit_verify_last_failure_timestamp_seconds": "audit verify failing",
        "verihook_heartbeat_timestamp_seconds": "a role down",
    }
    named = {name for rule in alerts() for name in METRIC.findall(rule["expr"])}
    assert set(watched) <= named, set(watched) - named
    assert any(re.search(r"\bup\{", rule["expr"]) for rule in alerts())
    by_provider = [r for r in alerts() if "by (provider)" in r["expr"]]
    assert {"verihook_auth_failures_total", "verihook_polls_total"} <= {
        name for rule in by_provider for name in METRIC.findall(rule["expr"])
    }


# ---- the runbook ----------------------------------------------------------------------------


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """Anchor → body of each `## ` section of the runbook."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {anchor(title): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_every_runbook_url_names_a_full_section() -> None:
    sections = runbook_sections()
    for rule in alerts():
        path, _, fragment = rule["annotations"]["runbook_url"].partition("#")
        assert (ROOT / path).resolve() == RUNBOOK
        assert fragment in sections, rule["alert"]
        body = sections[fragment]
        for part in RUNBOOK_PARTS:
            assert part in body, (rule["alert"], part)
        assert "verihook " in body or "`GET /" in body, rule["alert"]
    alert_sections = {a for a in sections if a.startswith("verihook")}
    assert alert_sections == {rule["alert"].lower() for rule in alerts()}


def runbook_commands() -> list[str]:
    """Every `verihook …` command line the runbook shows, in code blocks and inline code."""
    text = RUNBOOK.read_text()
    found: list[str] = []
    for block in re.findall(r"```(?:sh)?\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("verihook "):
                found.append(line.split("  #")[0].split(" # ")[0].strip())
    inline = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    found += [span for span in re.findall(r"`([^`\n]+)`", inline) if span.startswith("verihook ")]
    return found


def test_the_runbook_shows_the_on_call_commands() -> None:
    shown = {" ".join(resolve(shlex.split(c))[1]) for c in runbook_commands()}
    wanted = {"events list", "replay", "sessions reconcile", "audit verify", "outbox flush"}
    assert wanted <= shown, wanted - shown


@pytest.mark.parametrize("command", sorted(set(runbook_commands())))
def test_every_runbook_command_is_a_real_command(command: str) -> None:
    argv = shlex.split(command)
    found, path, rest = resolve(argv)
    result = CliRunner().invoke(cli, [*path, *rest, "--help"])
    assert result.exit_code == 0, f"{command}\n{result.output}"
    with found.make_context(path[-1], list(rest)):  # its options and arguments parse
        pass


# ---- metrics that exist ---------------------------------------------------------------------


@pytest.fixture
def exported(client) -> set[str]:  # type: ignore[no-untyped-def]
    """Every sample name a real verihook `/metrics` can carry (from its TYPE lines)."""
    body = client.get("/metrics").get_data(as_text=True)
    names: set[str] = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", body, flags=re.MULTILINE):
        suffixes = {
            "counter": ("", "_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"),
        }.get(kind, ("",))
        names |= {family + suffix for suffix in suffixes}
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of the dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (panel["title"], target["expr"])
        for panel in panels
        if panel["type"] != "row"
        for target in panel.get("targets", [])
    ]


def test_the_dashboard_has_no_dead_panels(exported: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel.get("targets"), panel["title"]
    for title, expr in dashboard_exprs():
        names = set(METRIC.findall(expr))
        assert names or re.search(r"\bup\{", expr), (title, expr)
        assert names <= exported, (title, names - exported)
    shown = {name for _, expr in dashboard_exprs() for name in METRIC.findall(expr)}
    for wanted in (
        "verihook_deliveries_total",
        "verihook_ingest_seconds_bucket",
        "verihook_queue_depth",
        "verihook_oldest_ready_event_age_seconds",
        "verihook_events_applied_total",
        "verihook_polls_total",
        "verihook_heals_total",
        "verihook_overdue_sessions",
        "verihook_notification_attempts_total",
        "verihook_scheduler_leader",
    ):
        assert wanted in shown, wanted


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, written as a recording rule."""
    rules = [
        {"record": f"verihook_dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_and_their_tests_name_only_exported_metrics(exported: set[str]) -> None:
    named = {name for rule in alerts() for name in METRIC.findall(rule["expr"])}
    for case in rule_tests():
        for series in case["input_series"]:
            named |= set(METRIC.findall(series["series"].split("{")[0]))
    assert named <= exported, named - exported


def test_the_readme_lists_every_metric_and_links_the_kit() -> None:
    readme = README.read_text()
    source = (ROOT / "receiver" / "metrics.py").read_text()
    made = r'(?:Counter|Gauge|Histogram|GaugeMetricFamily)\(\s*"(verihook_[a-z0-9_]+)"'
    defined = set(re.findall(made, source))
    assert len(defined) >= 20, defined
    listed = set(METRIC.findall(readme.split("### Metrics", 1)[1].split("\n## ", 1)[0]))
    assert defined <= listed, defined - listed
    for path in ("deploy/prometheus/alerts.yml", "deploy/grafana/verihook.json", "docs/RUNBOOK.md"):
        assert path in readme, path
