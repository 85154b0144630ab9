"""The human summary `mlcore validate` prints: counts first, then findings grouped by rule with a few examples."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console
from rich.table import Table

from mlcore.data.findings import Finding, Severity
from mlcore.data.prepare import DatasetReport

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
EXAMPLES_PER_RULE = 3


def print_summary(report: DatasetReport, console: Console) -> None:
    stats = report.statistics
    table = Table.grid(padding=(0, 2))
    table.add_row("dataset", f"{report.dataset}  [dim](sha256 {report.dataset_sha256[:12]}…)[/dim]")
    table.add_row("images", f"{stats.images if stats else 0} usable, in {report.images_root}")
    if stats:
        table.add_row("annotations", f"{stats.annotations} ({stats.crowd_annotations} crowd), "
                                     f"{stats.negative_images} negative image(s)")
        sizes = stats.object_sizes
        table.add_row("object sizes", f"small {sizes['small']}, medium {sizes['medium']}, large {sizes['large']}")
    table.add_row("classes", str(report.num_classes))
    table.add_row("mode", report.annotation_mode or "-")
    if report.splits:
        table.add_row("splits", ", ".join(f"{name} {count}" for name, count in report.splits.items()))
    console.print(table)

    grouped: dict[tuple[Severity, str], list[Finding]] = defaultdict(list)
    for finding in report.findings:
        grouped[(finding.severity, finding.code)].append(finding)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    if grouped:
        console.print()
    for (severity, code), items in sorted(grouped.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        console.print(f"[{STYLE[severity]}]{severity.value}[/] {code} ×{len(items)}", highlight=False)
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
