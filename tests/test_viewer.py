"""The browser viewer's kernel side, without a browser: what is sent (once, gzip NIfTI on the RAS grid), the
window presets, the read-out of the crosshair, the contrast-drag window, and the inputs it refuses.
tests/test_browser_viewer.py drives the same viewer in Chromium."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from viewer_phantom import BLOB_X, SHAPE, viewer_phantom, write_viewer_phantom

from medimg.errors import MedimgError
from medimg.io.volume import Volume
from medimg.viz import view
from medimg.viz.viewer_layers import nifti_gz
from medimg.viz.viewer_readout import position_at, window_from_box


def _sent(layer) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(layer.data))


def test_each_volume_is_sent_once_as_gzip_nifti_on_the_ras_grid():
    image, mask, heat = viewer_phantom()
    # the same image stored left-right flipped (an LAS affine): the viewer still sends it as RAS
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = SHAPE[0] - 1
    las = Volume(np.asarray(image.array)[::-1], image.affine @ flip, image.meta)
    las_mask = Volume(np.asarray(mask.array)[::-1], image.affine @ flip)
    v = view(las, {"mask": las_mask, "heatmap": Volume(np.asarray(heat.array)[::-1], image.affine @ flip)})
    names = [layer.name for layer in v.nv.volumes]
    assert names == ["image.nii.gz", "heatmap.nii.gz", "mask.nii.gz", "mask-outline.nii.gz"]
    sent = _sent(v.nv.volumes[0])
    assert nib.aff2axcodes(sent.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(np.asarray(sent.dataobj), image.array)  # back in RAS order
    np.testing.assert_allclose(sent.affine, image.affine)
    assert sent.get_data_dtype() == np.int16  # HU as stored, not widened
    assert np.asarray(_sent(v.nv.volumes[2]).dataobj).sum() == np.asarray(mask.array).sum()
    surface = np.asarray(_sent(v.nv.volumes[3]).dataobj)
    assert 0 < surface.sum() < np.asarray(mask.array).sum() and not (surface > np.asarray(mask.array)).any()
    assert (v.nv.volumes[2].opacity, v.nv.volumes[3].opacity) == (0.0, 0.8)  # outline shown, fill hidden
    assert len(v.nv.volumes[0].data) < np.asarray(image.array).nbytes / 4  # compressed
    heat_sent = _sent(v.nv.volumes[1])  # a map in [0, 1]: uint8 steps of 1/255
    assert heat_sent.get_data_dtype() == np.uint8
    np.testing.assert_allclose(heat_sent.get_fdata(), np.asarray(heat.array), atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize(
    ("modality", "preset", "window"),
    [
        ("CT", None, (-160.0, 240.0)),  # abdomen: centre 40, width 400 HU
        ("CT", "lung", (-1350.0, 150.0)),
        ("CT", "bone", (-500.0, 1300.0)),
        ("CT", (50.0, 100.0), (0.0, 100.0)),
    ],
)
def test_window_presets(modality, preset, window):
    image, _, _ = viewer_phantom()
    v = view(Volume(image.array, image.affine, {"modality": modality}), preset=preset)
    assert v.window == window
    assert v.nv.volumes[0].cal_min == window[0]
    assert "HU" in v.window_text.value


def test_mr_gets_the_percentile_window_and_presets_switch():
    image, _, _ = viewer_phantom()
    mr = Volume(np.asarray(image.array, np.float32) + 1000, image.affine, {"modality": "MR"})
    v = view(mr)
    lo, hi = np.percentile(np.asarray(mr.array), [1, 99])
    assert v.window == pytest.approx((lo, hi))
    assert "HU" not in v.window_text.value
    v.preset.value = "brain"
    assert v.window == (0.0, 80.0)


def test_crosshair_read_out_in_ras_and_lps_with_the_value():
    image, mask, heat = viewer_phantom()
    v = view(image, {"mask": mask, "heatmap": heat})
    centre = (BLOB_X, SHAPE[1] // 2, SHAPE[2] // 2)
    v._location_changed({"vox": list(centre), "mm": [0, 0, 0], "frac": [0.5] * 3, "values": []})
    p = v.position
    assert p.value == 600.0 and p.index == centre
    mm = tuple(image.affine[:3, :3] @ np.array(centre) + image.affine[:3, 3])
    assert p.ras_mm == pytest.approx(mm)
    assert p.lps_mm == pytest.approx((-mm[0], -mm[1], mm[2]))
    assert (p.slice_index("sagittal"), p.slice_index("coronal"), p.slice_index("axial")) == centre
    assert "value 600 HU" in v.readout.value and "LPS (" in v.readout.value


def test_position_maps_back_to_the_loaded_voxel_order():
    image, _, _ = viewer_phantom()
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = SHAPE[0] - 1
    las = Volume(np.asarray(image.array)[::-1], image.affine @ flip, image.meta)
    ras = np.asarray(image.array)
    p = position_at({"vox": [3, 4, 5]}, ras, image.affine, las.affine)
    assert p.ras_index == (3, 4, 5) and p.index == (SHAPE[0] - 1 - 3, 4, 5)
    assert p.value == float(np.asarray(las.array)[p.index])


def test_contrast_drag_window_is_the_box_range():
    image, _, _ = viewer_phantom()
    ras = np.asarray(image.array)
    # a box on axial slice 16 from the air at x=0 into the body: air -1000 HU .. body 40 HU
    assert window_from_box(ras, [0, 30, 16], [24, 32, 16]) == (-1000.0, 40.0)
    assert window_from_box(ras, [20, 30, 16], [24, 32, 16]) is None  # all body: flat, the window stays
    v = view(image)
    drag = {"event": "drag_release", "data": {"vox_start": [0, 30, 16], "vox_end": [24, 32, 16]}}
    intensity = {"event": "intensity_change", "data": {"id": v.nv.volumes[0].id}}
    v.nv._handle_custom_msg(drag, [])
    v.nv._handle_custom_msg({"event": "location_change", "data": {"vox": [1, 1, 1]}}, [])
    assert v.window == (-160.0, 240.0)  # a drag without NiiVue's contrast change (a left drag) sets nothing
    for order in ((drag, intensity), (intensity, drag)):  # mouse: drag then window; touch: window then drag
        v.apply_preset("abdomen")
        for message in order:
            v.nv._handle_custom_msg(message, [])
        assert v.window == (-1000.0, 40.0)
        assert "window -1000 .. 40 HU" in v.window_text.value and v.preset.value is None


def test_a_heatmap_on_another_grid_is_refused_naming_both_shapes():
    image, _, heat = viewer_phantom()
    small = Volume(np.asarray(heat.array)[:24], heat.affine)
    with pytest.raises(MedimgError, match=r"heatmap overlay's grid \(24, 40, 32\) differs from the image's grid "
                       r"\(48, 40, 32\)"):  # fmt: skip
        view(image, {"heatmap": small})
    moved = heat.affine.copy()
    moved[0, 3] += 5
    with pytest.raises(MedimgError, match="different affines"):
        view(image, {"heatmap": Volume(heat.array, moved)})
    with pytest.raises(MedimgError, match="unknown overlay 'heat'"):
        view(image, {"heat": heat})


def test_a_4d_volume_gets_a_volume_slider():
    image, mask, _ = viewer_phantom()
    four = Volume(np.stack([image.array, np.asarray(image.array) + 100], axis=-1), image.affine, image.meta)
    v = view(four, {"mask": mask})
    assert v.frame is not None and v.frame.max == 1
    v.frame.value = 1
    assert v.nv.volumes[0].frame_4d == 1
    v._location_changed({"vox": [BLOB_X, SHAPE[1] // 2, SHAPE[2] // 2]})
    assert v.position.value == 700.0
    with pytest.raises(MedimgError, match="expected"):
        view(Volume(np.zeros((4, 4, 4, 2, 2)), np.eye(4)))


def test_view_opens_files_and_controls_drive_the_widget(tmp_path):
    paths = write_viewer_phantom(tmp_path)
    v = view(paths["image"], {"mask": paths["mask"], "heatmap": paths["heatmap"]}, mask_style="fill")
    fill, line = v.nv.volumes[2], v.nv.volumes[3]
    assert (fill.opacity, line.opacity) == (0.8, 0.0)
    v.mask_style.value = "outline"
    assert (fill.opacity, line.opacity) == (0.0, 0.8)
    v.shown["mask"].value = False
    assert (fill.opacity, line.opacity) == (0.0, 0.0)
    v.convention.value = "neurological"
    assert v.nv.opts.is_radiological_convention is False
    v.shown["heatmap"].value = False
    assert v.nv.volumes[1].opacity == 0.0
    v.shown["heatmap"].value = True
    v.opacity.value = 0.7
    assert v.nv.volumes[1].opacity == 0.7
    v._webgl_answered(False)  # the browser said it has no WebGL2: still images, and the page says so
    assert "cannot draw WebGL2" in v.status.value and v.still.value[:4] == b"\x89PNG"
    with pytest.raises(MedimgError, match="no such file"):
        view(tmp_path / "missing.nii.gz")


def test_nifti_gz_keeps_values_and_geometry():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    img = nib.Nifti1Image.from_bytes(gzip.decompress(nifti_gz(a, np.diag([1.0, 2.0, 3.0, 1.0]))))
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(img.dataobj), a)
    assert img.header.get_zooms() == (1.0, 2.0, 3.0)


def test_the_review_widget_shows_the_browser_viewer_and_falls_back_to_still_images(tmp_path):
    from tests_support import synthetic_explanation

    from medimg.review import FeedbackStore, ReviewWidget

    ex = synthetic_explanation(1)
    review = ReviewWidget(ex, case_id="case-1", store=FeedbackStore(tmp_path / "r.sqlite"), reviewer="Dr. V")
    assert review.browser_viewer is not None and review.views.titles == ("Viewer", "Still images")
    assert [layer.name for layer in review.browser_viewer.nv.volumes][:3] == ["image.nii.gz", "heatmap.nii.gz",
                                                                            "mask.nii.gz"]  # fmt: skip
    assert review.views.selected_index == 0 and review.notice.value == ""
    review.browser_viewer._webgl_answered(False)
    assert review.views.selected_index == 1 and "cannot draw WebGL2" in review.notice.value
    assert review.image.value[:4] == b"\x89PNG"  # the still image is there to fall back on
