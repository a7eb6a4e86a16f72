"""Feedback store (round trip, concurrent writers, schema version), viewer widget, HTML/CSV report."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import numpy as np
import pytest

from medimg.errors import ReviewError
from medimg.explain.api import Explanation
from medimg.explain.sanity import SanityResult
from medimg.io import Volume
from medimg.review import SCHEMA_VERSION, Feedback, FeedbackStore, ReviewWidget, export_report

SHA = "a" * 64


def _fb(i: int = 0, **kw) -> Feedback:
    base = dict(case_id=f"case{i}", reviewer="dr. who", verdict="agree", checkpoint_sha256=SHA,
                input_sha256="b" * 64, method="hirescam", layer="model.2", localisation=4,
                comment=f"ok {i}")  # fmt: skip
    base.update(kw)
    return Feedback(**base)  # type: ignore[arg-type]


def test_round_trip_and_schema_version(tmp_path):
    store = FeedbackStore(tmp_path / "r.sqlite")
    row = store.add(_fb(1, comment="map on the lesion, misses the margin", verdict="partly"))
    (back,) = store.all(case_id="case1")
    assert back.id == row and back.verdict == "partly" and back.comment.startswith("map on the lesion")
    assert back.checkpoint_sha256 == SHA
    assert store.schema_version == SCHEMA_VERSION == 2
    assert "case1" in store.to_csv()


def test_bad_answers_are_refused():
    with pytest.raises(ReviewError, match="verdict"):
        _fb(verdict="maybe")
    with pytest.raises(ReviewError, match=r"1\.\.5"):
        _fb(localisation=7)
    with pytest.raises(ReviewError, match="reviewer"):
        _fb(reviewer=" ")


def test_newer_schema_is_not_touched(tmp_path):
    path = tmp_path / "future.sqlite"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(ReviewError, match="newer than this medimg"):
        FeedbackStore(path)


def _writer(path: str, worker: int, n: int) -> None:
    store = FeedbackStore(path)
    for i in range(n):
        store.add(_fb(worker * 1000 + i, reviewer=f"kernel{worker}"))


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    FeedbackStore(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 60)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = FeedbackStore(path).all()
    assert len(rows) == 120
    assert {r.reviewer for r in rows} == {"kernel1", "kernel2"}


def _explanation() -> Explanation:
    rng = np.random.default_rng(0)
    img = Volume(rng.normal(40, 20, (24, 20, 16)).astype(np.float32), np.eye(4), {"modality": "CT"})
    heat = np.zeros((24, 20, 16), np.float32)
    heat[8:14, 6:12, 4:12] = 1.0
    pred = (heat > 0).astype(np.uint8)
    return Explanation(
        image=img, heatmap=Volume(heat, np.eye(4)), prediction=Volume(pred, np.eye(4)), label=1, method="hirescam",
        layer="model.2", checkpoint_sha256=SHA, input_sha256="c" * 64, sanity=SanityResult(0.1, 0.5, 7),
    )  # fmt: skip


def test_viewer_slices_render_differently_and_the_form_saves(tmp_path):
    store = FeedbackStore(tmp_path / "v.sqlite")
    view = ReviewWidget(_explanation(), case_id="case-7", store=store, reviewer="")
    first = view.image.value
    view.slice.value = 2
    assert view.image.value != first  # another slice, another picture
    view.plane.value = "sagittal"
    assert view.slice.max == 23
    assert view.save() is None and "not saved" in view.status.value  # no verdict, no reviewer yet
    view.verdict.value = "disagree"
    view.reviewer.value = "dr. house"
    view.comment.value = "heat on the kidney, not the spleen"
    assert view.save() == 1
    (row,) = store.all()
    assert (row.case_id, row.verdict, row.checkpoint_sha256, row.sanity_rho) == ("case-7", "disagree", SHA, 0.1)


def test_a_large_case_opens_on_still_images_and_builds_the_browser_viewer_on_demand(tmp_path, monkeypatch):
    import medimg.review.viewer as review_viewer

    small = ReviewWidget(_explanation(), case_id="c", store=FeedbackStore(tmp_path / "s.sqlite"), reviewer="")
    assert small.browser_viewer is not None and small.views.selected_index == 0  # small: the viewer first
    monkeypatch.setattr(review_viewer, "LAZY_VIEWER_VOXELS", 1000)  # as if the case were a 512 x 512 x 300 CT
    view = ReviewWidget(_explanation(), case_id="c", store=FeedbackStore(tmp_path / "v.sqlite"), reviewer="")
    assert view.browser_viewer is None and view.views.selected_index == 1  # nothing sent yet: still images
    assert view.image.value  # ... which are drawn
    view.open_viewer.click()
    assert view.browser_viewer is not None and view.views.children[0] is view.browser_viewer.widget
    assert view.views.selected_index == 0


def test_the_case_uncertainty_map_is_an_overlay_of_the_browser_viewer(tmp_path):
    import gzip

    import nibabel as nib

    from medimg.errors import MedimgError
    from medimg.inference.ensemble import outputs_beside
    from medimg.inference.uncertainty import uncertainty_maps

    ex = _explanation()
    # three members that agree inside the box and disagree at its border, as an ensemble writes case_uncertainty
    fg = np.stack([np.roll(np.asarray(ex.prediction.array), s, axis=0) for s in (-1, 0, 1)]).astype(np.float32)
    probs = np.stack([0.95 - 0.9 * fg, 0.05 + 0.9 * fg], axis=1)
    entropy = uncertainty_maps(probs).entropy
    path = outputs_beside(tmp_path / "case.nii.gz")["uncertainty"]
    Volume(entropy, ex.image.affine).save(path)
    store = FeedbackStore(tmp_path / "u.sqlite")
    for given in (path, Volume(entropy, ex.image.affine)):
        view = ReviewWidget(ex, case_id="c", store=store, reviewer="", uncertainty=given)
        layers = {layer.name: layer for layer in view.browser_viewer.nv.volumes}
        sent = nib.Nifti1Image.from_bytes(gzip.decompress(layers["uncertainty.nii.gz"].data)).get_fdata()
        np.testing.assert_allclose(sent, entropy, atol=0.5 / 255 + 1e-6)  # entropy of 2 classes <= ln 2: 1/255 steps
        assert sent.max() > 0.5 and sent[0, 0, 0] < 0.3  # high at the box's border, low far from it
        assert view.browser_viewer.shown["uncertainty"].description == "uncertainty"
    no_map = ReviewWidget(ex, case_id="c", store=store, reviewer="")
    assert "uncertainty" not in no_map.browser_viewer.shown
    with pytest.raises(MedimgError, match="no such file"):
        ReviewWidget(ex, case_id="c", store=store, reviewer="", uncertainty=tmp_path / "missing.nii.gz")


def test_report_is_self_contained_html_plus_csv(tmp_path):
    store = FeedbackStore(tmp_path / "r.sqlite")
    store.add(_fb(0, case_id="case-7", comment="<script>alert(1)</script>"))
    out = export_report([("case-7", _explanation())], tmp_path / "report.html", store)
    text = out.read_text()
    assert "data:image/png;base64," in text and "<script>alert" not in text  # embedded image, escaped comment
    assert "randomisation check passes" in text
    assert (tmp_path / "report.csv").read_text().count("case-7") == 1
