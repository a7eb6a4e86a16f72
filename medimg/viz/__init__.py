"""Drawing and tables: everything medimg shows, apart from the data it shows.

Three-plane figures with window presets, contours and heatmaps (:mod:`medimg.viz.planes`), the browser
viewer (:func:`view`, NiiVue through ipyniivue: linked planes, crosshair, wheel scroll, drag window; in
:mod:`medimg.viz.viewer`), and the scan's QA
table as text or HTML (:mod:`medimg.viz.tables`), per-site scores over the epochs
(:mod:`medimg.viz.sites`), reliability diagrams (:mod:`medimg.viz.calibration`). matplotlib is imported only
when a figure is drawn.
"""

from medimg.viz.calibration import plot_reliability, save_reliability_plot
from medimg.viz.planes import (
    CT_WINDOWS,
    PLANES,
    Plane,
    figure_png,
    heatmap_2d,
    pick_volume,
    render_planes,
    slice_2d,
    to_ras,
    window_image,
)
from medimg.viz.sites import plot_site_history, save_site_plot
from medimg.viz.tables import ScanTable, SeriesRow, scan_html, scan_text
from medimg.viz.viewer import Viewer, view

__all__ = [
    "CT_WINDOWS",
    "PLANES",
    "Plane",
    "ScanTable",
    "SeriesRow",
    "Viewer",
    "figure_png",
    "heatmap_2d",
    "pick_volume",
    "plot_reliability",
    "plot_site_history",
    "render_planes",
    "save_reliability_plot",
    "save_site_plot",
    "scan_html",
    "scan_text",
    "slice_2d",
    "to_ras",
    "view",
    "window_image",
    "window_range",
]
