"""The human summary `mlcore validate` prints: counts first, then findings grouped by rule with a few examples."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console

from mlcore.data.findings import Finding, Severity
from mlcore.data.prepare import DatasetReport

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
EXAMPLES_PER_RULE = 3


def print_summary(report: DatasetReport, console: Console) -> None:
    stats = report.statistics
    rows = [("dataset", f"{report.dataset}  (sha256 {report.dataset_sha256[:12]}…)"),
            ("images", f"{stats.images if stats else 0} usable, in {report.images_root}")]
    if stats:
        sizes = stats.object_sizes
        rows += [("annotations", f"{stats.annotations} ({stats.crowd_annotations} crowd), "
                                 f"{stats.negative_images} negative image(s)"),
                 ("object sizes", f"small {sizes['small']}, medium {sizes['medium']}, large {sizes['large']}")]
    rows += [("classes", str(report.num_classes)), ("mode", report.annotation_mode or "-")]
    if report.splits:
        rows.append(("splits", ", ".join(f"{name} {count}" for name, count in report.splits.items())))
    for label, value in rows:  # plain lines, not a table: a table truncates long paths in pipes and CI logs
        console.print(f"{label:<14}{value}", highlight=False, markup=False)

    grouped: dict[tuple[Severity, str], list[Finding]] = defaultdict(list)
    for finding in report.findings:
        grouped[(finding.severity, finding.code)].append(finding)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    if grouped:
        console.print()
    for (severity, code), items in sorted(grouped.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        console.print(f"[{STYLE[severity]}]{severity.value}[/] {code} ×{sum(f.count for f in items)}",
                      highlight=False)
        for finding in items[:EXAMPLES_PER_RULE]:
            console.print(f"    {finding.path}: {finding.message}", highlight=False, markup=False)
        if len(items) > EXAMPLES_PER_RULE:
            console.print(f"    … and {len(items) - EXAMPLES_PER_RULE} more in report.json", style="dim")
        if items[0].fix:
            console.print(f"    fix: {items[0].fix}", style="dim", highlight=False, markup=False)

    counts = report.counts
    console.print()
    console.print(f"{counts.get('error', 0)} error(s), {counts.get('warning', 0)} warning(s), "
                  f"{counts.get('info', 0)} note(s). Report: {report.outputs.get('report')}", highlight=False)
    if report.usable:
        console.print(f"[bold green]usable[/]: outputs in {report.output_dir}", highlight=False)
    else:
        console.print("[bold red]not usable[/]: fix the errors above and run validate again", highlight=False)
