"""Reports people read: paper-style tables, figures and a standalone HTML page.

``write_report(results_dir, out_dir)`` turns a sweep's ``results/`` into ``report.md``,
``report.html`` and ``figures/*.png|svg``.
"""

from antireg.report.build import ReportPaths, write_report
from antireg.report.results import ReportError

__all__ = ["ReportError", "ReportPaths", "write_report"]
