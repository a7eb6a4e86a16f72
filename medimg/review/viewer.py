"""The radiologist's viewer and feedback form for JupyterLab (ipywidgets).

``review(explanation, case_id=...)`` shows one case: the interactive browser viewer (:func:`medimg.viz.view`: linked
planes, crosshair, wheel scroll, drag window, mask / label / heatmap overlays, and the model's uncertainty map when the
case has one) and, on a second tab and as the fallback where the browser has no WebGL, still images drawn here with
plane and slice sliders, CT/MR window preset, heatmap opacity, toggles for label / prediction / heatmap; the
sanity-check verdict, and a form (verdict, localisation score, comment, reviewer) whose answer goes to the
:class:`~medimg.review.store.FeedbackStore` together with the checkpoint's and the input's SHA-256, the method and the
layer. A reading session (:mod:`medimg.review.session`) shows one such viewer per case; an earlier answer passed as
``previous`` fills the form, and saving again stores an amendment (a new row naming the one it amends), never an
overwrite.
"""

from __future__ import annotations

import html
import os
from dataclasses import replace
from typing import Any

import numpy as np

from medimg.explain.api import Explanation
from medimg.explain.methods import DEFAULT_METHOD
from medimg.io.volume import Volume
from medimg.review.store import CANNOT_ASSESS, VERDICTS, Feedback, FeedbackStore
from medimg.viz import CT_WINDOWS, PLANES, figure_png, render_planes, to_ras

__all__ = ["ReviewWidget", "review"]

#: Above this many voxels (a 256^3 volume) the review widget opens on the still images and builds the browser
#: viewer only when asked: sending and decoding the volumes is what costs at that size, not drawing them.
LAZY_VIEWER_VOXELS = 256**3


class ReviewWidget:
    """Viewer + form for one case; ``.widget`` is the ipywidgets container to display, ``.explanation`` the
    map it shows, ``.previous`` the answer the next save amends (None before the first)."""

    def __init__(
        self,
        explanation: Explanation,
        *,
        case_id: str,
        store: FeedbackStore,
        label: Volume | None = None,
        reviewer: str = "",
        previous: Feedback | None = None,
        uncertainty: Volume | str | os.PathLike[str] | None = None,
    ) -> None:
        import ipywidgets as w

        self.explanation, self.case_id, self.store, self.label = explanation, case_id, store, label
        #: the model's voxel uncertainty map (e.g. ``case_uncertainty.nii.gz``, entropy in nats, that
        #: ``medimg segment --tta`` / an ensemble writes beside the mask), shown as the viewer's "uncertainty" overlay
        self.uncertainty = _as_volume(uncertainty)
        self.previous = previous
        shape = to_ras(explanation.image).shape
        self._axis_len = {"sagittal": shape[0], "coronal": shape[1], "axial": shape[2]}
        modality = str(explanation.image.meta.get("modality", ""))
        presets = [*CT_WINDOWS] if modality == "CT" else ["auto (1-99 %)", *CT_WINDOWS]
        self.plane = w.ToggleButtons(options=list(PLANES), value="axial", description="Plane")
        self.slice = w.IntSlider(value=self._axis_len["axial"] // 2, min=0, max=self._axis_len["axial"] - 1,
                                 description="Slice", continuous_update=False)  # fmt: skip
        self.preset = w.Dropdown(options=presets, value=presets[0], description="Window")
        self.opacity = w.FloatSlider(value=0.4, min=0.0, max=1.0, step=0.05, description="Heatmap α")
        self.show_heat = w.Checkbox(value=True, description="heatmap")
        self.show_pred = w.Checkbox(value=True, description="model's mask")
        self.show_label = w.Checkbox(value=label is not None, description="reference label", disabled=label is None)
        self.image = w.Image(format="png", layout=w.Layout(width="520px"))
        sanity = explanation.sanity
        sanity_text = "no sanity check run" if sanity is None else str(sanity)
        colour = "green" if sanity is not None and sanity.trustworthy else "#b00"
        self.sanity = w.HTML(f"<b style='color:{colour}'>{sanity_text}</b>")
        self.verdict = w.ToggleButtons(options=list(VERDICTS), value=None, description="Verdict")
        self.localisation = w.IntSlider(value=3, min=1, max=5, description="Localisation",
                                        tooltip="1 = map misses the finding, 5 = map on the finding")  # fmt: skip
        self.comment = w.Textarea(placeholder="What is right or wrong about the map?", description="Comment")
        self.reviewer = w.Text(value=reviewer, placeholder="your name", description="Reviewer")
        self.submit = w.Button(description="Save answer", button_style="primary", icon="check")
        self.status = w.HTML()
        if previous is not None:
            self._fill(previous)
        self.plane.observe(self._plane_changed, names="value")
        for control in (self.slice, self.preset, self.opacity, self.show_heat, self.show_pred, self.show_label):
            control.observe(lambda _change: self.redraw(), names="value")
        self.submit.on_click(lambda _b: self.save())
        form = w.VBox([self.verdict, self.localisation, self.comment, self.reviewer, self.submit, self.status])
        controls = w.VBox([self.plane, self.slice, self.preset, self.opacity,
                           w.HBox([self.show_heat, self.show_pred, self.show_label])])  # fmt: skip
        header = w.HTML(
            f"<h3>{case_id}</h3><p>{explanation.method} of class {explanation.label} on layer "
            f"<code>{explanation.layer}</code>. Radiological convention: the patient's right is on the "
            "image's left.</p>"
        )
        still = w.VBox([self.image, controls])
        self.notice = w.HTML()
        self.browser_viewer: Any = None
        if explanation.image.array.size > LAZY_VIEWER_VOXELS:
            # a large volume: the still images first, the browser viewer built (and its volumes sent) on demand --
            # ipyniivue's first picture of a 512 x 512 x 300 CT took minutes on the 2-core machine (BENCHMARKS.md)
            self.open_viewer = w.Button(description="Open the interactive viewer", icon="cube")
            self.open_viewer.on_click(lambda _b: self._build_viewer())
            self.views = w.Tab(children=[w.VBox([self.open_viewer]), still], titles=["Viewer", "Still images"])
            self.views.selected_index = 1
        else:
            self.browser_viewer = self._browser_viewer()
            if self.browser_viewer is None:
                self.views = w.Tab(children=[still], titles=["Still images"])
            else:
                self.views = w.Tab(children=[self.browser_viewer.widget, still], titles=["Viewer", "Still images"])
        self.views.layout = w.Layout(width="62%", min_width="560px")  # the form keeps the rest of the row
        self.widget = w.VBox([header, self.notice, w.HBox([self.views, w.VBox([self.sanity, form])])])
        self.redraw()

    def _browser_viewer(self) -> Any:
        """The interactive viewer (NiiVue in the browser) of the image with the mask, label and heatmap; None,
        with the reason on screen, when it cannot be built (the still images stay)."""
        from medimg.errors import MedimgError
        from medimg.viz.viewer import Viewer

        ex = self.explanation
        overlays = {"mask": ex.prediction, "heatmap": ex.heatmap, "label": self.label, "uncertainty": self.uncertainty}
        try:
            return Viewer(ex.image, {k: v for k, v in overlays.items() if v is not None}, height=560,
                          on_no_webgl=self._no_webgl)  # fmt: skip
        except MedimgError as exc:
            self.notice.value = f"<i>no interactive viewer for this case ({html.escape(str(exc))}): still images</i>"
            return None

    def _build_viewer(self) -> None:
        """Build the browser viewer of a large case when the reader asks for it (its tab shows it)."""
        self.open_viewer.disabled = True
        self.browser_viewer = self._browser_viewer()
        if self.browser_viewer is not None:
            self.views.children = [self.browser_viewer.widget, *self.views.children[1:]]
            self.views.selected_index = 0

    def _no_webgl(self) -> None:
        """The browser has no WebGL2: say so and show the still images."""
        from medimg.viz.viewer import NO_WEBGL

        self.notice.value = f"<b style='color:#b00'>{NO_WEBGL}</b>"
        self.views.selected_index = len(self.views.children) - 1

    def _fill(self, answer: Feedback) -> None:
        self.verdict.value = answer.verdict
        self.localisation.value = answer.localisation or 3
        self.comment.value = answer.comment
        self.status.value = (
            f"<span>your answer of {answer.created_utc} (UTC) is shown; saving again stores an amendment</span>"
        )

    def _plane_changed(self, change: dict[str, Any]) -> None:
        n = self._axis_len[change["new"]]
        self.slice.max = n - 1
        self.slice.value = n // 2
        self.redraw()

    def render(self) -> bytes:
        """PNG of the current view (also what the browser test compares between slices)."""
        preset = None if str(self.preset.value).startswith("auto") else self.preset.value
        fig = render_planes(
            self.explanation.image,
            heatmap=self.explanation.heatmap,
            prediction=self.explanation.prediction,
            label=self.label,
            preset=preset,
            planes=[self.plane.value],
            indices={self.plane.value: int(self.slice.value)},
            alpha=float(self.opacity.value),
            show={"heatmap": self.show_heat.value, "prediction": self.show_pred.value, "label": self.show_label.value},
        )
        return figure_png(fig, dpi=90)

    def redraw(self) -> None:
        self.image.value = self.render()

    def save(self) -> int | None:
        """Store the form's answer; shows what happened under the button."""
        from medimg.errors import MedimgError

        reviewer = str(self.reviewer.value).strip()
        earlier = self.previous if self.previous is not None and self.previous.reviewer == reviewer else None
        try:
            fb = Feedback(
                case_id=self.case_id,
                reviewer=reviewer,
                verdict=self.verdict.value,
                localisation=None if self.verdict.value == CANNOT_ASSESS else int(self.localisation.value),
                comment=str(self.comment.value),
                checkpoint_sha256=self.explanation.checkpoint_sha256,
                input_sha256=self.explanation.input_sha256,
                method=self.explanation.method,
                layer=self.explanation.layer,
                label=self.explanation.label,
                sanity_rho=None if self.explanation.sanity is None else self.explanation.sanity.correlation,
                amends=None if earlier is None else earlier.id,
            )
            row = self.store.add(fb)
        except MedimgError as exc:
            self.status.value = f"<span style='color:#b00'>not saved: {exc}</span>"
            return None
        self.previous = replace(fb, id=row)
        kind = "answer" if fb.amends is None else f"amendment of #{fb.amends}"
        self.status.value = f"<span style='color:green'>saved {kind} #{row} for {self.case_id}</span>"
        return row


def _as_volume(thing: Volume | str | os.PathLike[str] | None) -> Volume | None:
    if thing is None or isinstance(thing, Volume):
        return thing
    from medimg.io import load

    return load(thing)


def review(
    ckpt: str | os.PathLike[str],
    image: str | os.PathLike[str],
    *,
    case_id: str | None = None,
    label: int = 1,
    reference: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] = "data/reviews.sqlite",
    method: str = DEFAULT_METHOD,
    reviewer: str = "",
    uncertainty: str | os.PathLike[str] | None = None,
) -> ReviewWidget:
    """One call for the review notebook: explain ``image`` with ``ckpt`` and return the viewer + form;
    ``uncertainty``: the case's voxel uncertainty map (``case_uncertainty.nii.gz``) as a viewer overlay."""
    from medimg.explain.api import explain_case
    from medimg.io import load

    ex = explain_case(ckpt, image, label, method=method)
    ref = None
    if reference is not None:
        ref_vol = load(reference)
        ref = Volume(np.asarray(ref_vol.array), ref_vol.affine)
    return ReviewWidget(
        ex,
        case_id=case_id or os.path.basename(os.fspath(image)),
        store=FeedbackStore(store),
        label=ref,
        reviewer=reviewer,
        uncertainty=uncertainty,
    )
