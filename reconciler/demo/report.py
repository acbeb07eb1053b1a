"""The demo's report: who settled what (webhook, poll, overdue), what it cost in status calls,
and notes on deliveries, the providers' real-world variants and the result shapes read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.demo.verdict import PlannedSession, SessionResult


@dataclass
class ProviderFigures:
    """One provider's line of the report."""

    sessions: int = 0
    by_webhook: int = 0
    healed: int = 0
    overdue: int = 0
    mismatched: int = 0
    status_calls: int = 0

    @property
    def calls_per_healed(self) -> float | None:
        """Status calls spent per session healed by a poll (None when none was healed)."""
        return self.status_calls / self.healed if self.healed else None


@dataclass
class DemoReport:
    """What the demo (or the chaos test) found."""

    providers: dict[str, ProviderFigures]
    results: list[SessionResult]
    idenfy_calls_after_final_webhook: int
    elapsed_seconds: float = 0.0
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)
    pii: list[str] = field(default_factory=list)
    """Every personal value the simulators generated during the run (for leak checks)."""

    @property
    def mismatches(self) -> list[SessionResult]:
        """Sessions where verihook does not agree with the simulator."""
        return [result for result in self.results if not result.matches]

    @property
    def healed(self) -> int:
        """Sessions healed by a poll, over all providers."""
        return sum(figures.healed for figures in self.providers.values())

    @property
    def status_calls(self) -> int:
        """Status calls the simulators answered, over all providers."""
        return sum(figures.status_calls for figures in self.providers.values())

    @property
    def calls_per_healed(self) -> float | None:
        """Status calls per healed session, over all providers."""
        return self.status_calls / self.healed if self.healed else None

    @property
    def ok(self) -> bool:
        """Every session matches the truth, in time."""
        return not self.mismatches and not self.timed_out


def status_calls(sim: Any) -> int:
    """Status-endpoint calls one simulator answered."""
    return int(sum(sim.stats()["status_calls"].values()))


def build_report(results: list[SessionResult], sims: Mapping[str, Any], **extra: Any) -> DemoReport:
    """Sum the per-session results up per provider, with the simulators' status-call counts."""
    figures = {name: ProviderFigures(status_calls=status_calls(sims[name])) for name in sims}
    for result in results:
        line = figures[result.provider]
        line.sessions += 1
        line.mismatched += not result.matches
        if result.outcome == "overdue":
            line.overdue += 1
        elif result.outcome == "healed":
            line.healed += 1
        elif result.outcome == "webhook":
            line.by_webhook += 1
    idenfy_calls = sum(
        r.status_calls for r in results if r.provider == "idenfy" and r.final_delivered
    )
    return DemoReport(figures, results, idenfy_calls, **extra)


def format_report(report: DemoReport, shown_mismatches: int = 5) -> str:
    """The report as a plain-text table with a verdict underneath."""
    header = (
        f"{'provider':<11} {'sessions':>8} {'webhook':>8} {'healed':>7} {'overdue':>8} "
        f"{'wrong':>6} {'status calls':>13} {'calls/healed':>13}"
    )
    lines = [header, "-" * len(header)]
    total = ProviderFigures()
    for name, line in report.providers.items():
        lines.append(_row(name, line))
        for attribute in vars(total):
            setattr(total, attribute, getattr(total, attribute) + getattr(line, attribute))
    lines += ["-" * len(header), _row("all", total), ""]
    lines.append(
        "iDenfy status calls for sessions whose final webhook arrived: "
        f"{report.idenfy_calls_after_final_webhook}"
    )
    lines.append(
        f"elapsed: {report.elapsed_seconds:.1f} s" + (" (TIMED OUT)" if report.timed_out else "")
    )
    lines += report.notes
    wrong = report.mismatches
    lines.append(
        f"matches the simulators' truth: {len(report.results) - len(wrong)}/{len(report.results)}"
    )
    for result in wrong[:shown_mismatches]:
        lines.append(
            f"  MISMATCH {result.provider}/{result.session_id} scripted {result.scripted}: "
            f"expected {result.expected}, verihook has {result.actual} (via {result.source})"
        )
    if len(wrong) > shown_mismatches:
        lines.append(f"  … and {len(wrong) - shown_mismatches} more")
    return "\n".join(lines)


def _row(name: str, line: ProviderFigures) -> str:
    ratio = line.calls_per_healed
    shown = f"{ratio:.2f}" if ratio is not None else "-"
    return (
        f"{name:<11} {line.sessions:>8} {line.by_webhook:>8} {line.healed:>7} {line.overdue:>8} "
        f"{line.mismatched:>6} {line.status_calls:>13} {shown:>13}"
    )


def delivery_notes(results: Iterable[SessionResult]) -> list[str]:
    """One line: per provider, how many sessions lost their final webhook or redirect."""
    lost: dict[str, int] = {}
    for result in results:
        lost[result.provider] = lost.get(result.provider, 0) + (not result.final_delivered)
    counts = ", ".join(f"{name} {count}" for name, count in lost.items())
    return [
        f"sessions whose final webhook/redirect never arrived: {counts} (a Nevis redirect that "
        "does not name its session counts as lost)"
    ]


def variant_notes(results: Iterable[SessionResult]) -> list[str]:
    """One line: the real-world variants the simulators played, and how many of those matched."""
    played: dict[tuple[str, str], list[int]] = {}
    for result in results:
        if result.variant:
            counts = played.setdefault((result.provider, result.variant), [0, 0])
            counts[0] += result.matches
            counts[1] += 1
    if not played:
        return ["real-world variants played: none"]
    listed = ", ".join(
        f"{provider} {variant} {matched}/{total}"
        for (provider, variant), (matched, total) in sorted(played.items())
    )
    return [f"real-world variants played (matching/sessions): {listed}"]


def result_shape_notes(sims: Mapping[str, Any], planned: Iterable[PlannedSession]) -> list[str]:
    """One line: which docverify result shape verihook's polls read (DESIGN: always
    `detailed=true`; the simulator answers the deprecated shape otherwise)."""
    if "docverify" not in sims:
        return []
    reads = {"detailed": 0, "deprecated": 0}
    for item in planned:
        if item.provider == "docverify" and item.session_id:
            truth = sims["docverify"].truth(item.session_id) or {}
            for shape, count in truth.get("result_reads", {}).items():
                reads[shape] = reads.get(shape, 0) + count
    return [
        f"docverify result reads: detailed {reads['detailed']}, deprecated "
        f"{reads['deprecated']} (DESIGN: always detailed=true)"
    ]


def review_notes(results: Iterable[SessionResult]) -> list[str]:
    """What sessions that ended in `review` cost in status calls (a final `review` answer settles
    its session: the planner does not poll it again)."""
    reviews = [result for result in results if result.expected.startswith("review/")]
    if not reviews:
        return []
    calls = sum(result.status_calls for result in reviews)
    idenfy = sum(r.status_calls for r in reviews if r.provider == "idenfy" and r.final_delivered)
    return [
        f"sessions that ended in review: {len(reviews)}, status calls spent on them: {calls} "
        f"(iDenfy after its final webhook: {idenfy}); a final review answer settles its session "
        "until a person decides"
    ]
