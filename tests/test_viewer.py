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


# ---- DICOM SEG and Parametric Map files opened directly as overlays ------------------------------------------
DCM_SHAPE = (16, 14, 6)
SEGMENT_RGB = {1: (221, 130, 101), 2: (157, 108, 162)}  # liver, spleen: the colours the SEG recommends


def _dicom_case(tmp_path):
    """A small CT series, a 2-segment SEG of it whose segments recommend a display colour (0062,000D), and a
    Parametric Map of values 0 .. 3 (not a [0, 1] map), all written with medimg's writers."""
    import highdicom as hd
    import pydicom

    from medimg.io import load
    from medimg.io.derived import write_seg
    from medimg.io.derived.parametric_map import write_parametric_map
    from medimg.io.dicom.write import write_series

    rng = np.random.default_rng(3)
    ct = Volume(rng.integers(-200, 200, DCM_SHAPE).astype(np.int16), np.diag([0.8, 0.9, 2.0, 1.0]))
    write_series(ct, tmp_path / "ct", modality="CT")
    image = load(tmp_path / "ct")
    mask = np.zeros(DCM_SHAPE, np.uint8)
    mask[2:7, 3:9, 1:4] = 1
    mask[9:14, 4:10, 2:5] = 2
    seg = write_seg(Volume(mask, image.affine), tmp_path / "ct", tmp_path / "seg.dcm",
                    labels={1: "liver", 2: "spleen"})  # fmt: skip
    ds = pydicom.dcmread(seg)
    for item in ds.SegmentSequence:
        item.RecommendedDisplayCIELabValue = list(hd.color.CIELabColor.from_rgb(*SEGMENT_RGB[item.SegmentNumber]).value)
    ds.save_as(seg)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in DCM_SHAPE], indexing="ij")
    values = (3.0 * np.exp(-((ii - 8) ** 2 + (jj - 7) ** 2 + (kk - 3) ** 2) / 20.0)).astype(np.float32)
    pm = write_parametric_map(Volume(values, image.affine), tmp_path / "ct", tmp_path / "pm.dcm", method="hirescam",
                              label=1, layer="model.2")  # fmt: skip
    return image, mask, values, seg, pm


def test_a_dicom_seg_and_parametric_map_open_as_overlays_with_their_segments_and_colours(tmp_path):
    import highdicom as hd
    import pydicom

    from medimg.viz.planes import to_ras

    image, mask, values, seg, pm = _dicom_case(tmp_path)
    v = view(tmp_path / "ct", {"seg": seg, "heatmap": str(pm)})
    assert [layer.name for layer in v.nv.volumes] == ["image.nii.gz", "heatmap.nii.gz", "seg.nii.gz"]
    assert v.segments == {1: "liver", 2: "spleen"}
    sent_seg = np.asarray(_sent(v.nv.volumes[2]).dataobj)
    np.testing.assert_array_equal(sent_seg, np.asarray(to_ras(Volume(mask, image.affine)).array))
    np.testing.assert_allclose(_sent(v.nv.volumes[2]).affine, _sent(v.nv.volumes[0]).affine)
    # NiiVue's label colour map: 0 transparent, each segment opaque in the colour its SEG item recommends
    lut = v.nv.volumes[2].colormap_label
    assert (lut.min, lut.max, lut.labels) == (0, 2, ["background", "liver", "spleen"])
    assert lut.lut[3] == 0
    for item in pydicom.dcmread(seg).SegmentSequence:
        n = int(item.SegmentNumber)
        rgb = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb(clip=True)
        assert tuple(lut.lut[4 * n : 4 * n + 4]) == (*rgb, 255)
        assert np.abs(np.subtract(rgb, SEGMENT_RGB[n])).max() <= 2  # what the writer asked for, to rounding
    heat = _sent(v.nv.volumes[1])  # the Parametric Map as a heatmap: its real values, shown from a tenth of the top
    np.testing.assert_allclose(heat.get_fdata(), np.asarray(to_ras(Volume(values, image.affine)).array), rtol=1e-6)
    assert (v.nv.volumes[1].cal_min, v.nv.volumes[1].cal_max) == pytest.approx((0.3, 3.0), rel=1e-4)
    # the read-out names the segment under the crosshair, and nothing outside the segments
    inside = np.argwhere(sent_seg == 2)[0]
    v._location_changed({"vox": [int(c) for c in inside]})
    assert "segment: spleen" in v.readout.value
    v._location_changed({"vox": [0, 0, 0]})
    assert "segment" not in v.readout.value
    v.shown["seg"].value = False
    assert v.nv.volumes[2].opacity == 0.0
    # as the model's mask: any segment is foreground
    as_mask = view(image, {"mask": seg})
    assert np.asarray(_sent(as_mask.nv.volumes[1]).dataobj).sum() == np.count_nonzero(mask)


def test_a_dicom_overlay_of_another_frame_or_under_the_wrong_key_is_refused(tmp_path):
    from medimg.io.dicom.write import write_series

    image, _, _, seg, pm = _dicom_case(tmp_path)
    write_series(Volume(np.asarray(image.array), np.diag([0.8, 0.9, 2.0, 1.0])), tmp_path / "other", modality="CT")
    with pytest.raises(MedimgError, match=r"seg overlay is in Frame of Reference \(0020,0052\) [0-9.]+ and the "
                       r"image in [0-9.]+"):  # fmt: skip
        view(tmp_path / "other", {"seg": seg})
    with pytest.raises(MedimgError, match=r"pm\.dcm is a DICOM Parametric Map: open it as 'heatmap'"):
        view(image, {"seg": pm})
    with pytest.raises(MedimgError, match=r"seg\.dcm is a DICOM SEG: open it as 'seg'"):
        view(image, {"heatmap": seg})
    with pytest.raises(MedimgError, match="not segment numbers"):
        view(image, {"seg": Volume(np.full(DCM_SHAPE, 0.5, np.float32), image.affine)})


def test_volumes_are_not_copied_back_and_the_image_counts_as_loaded_when_the_browser_says_so():
    """ipyniivue copies every decoded volume back to the kernel and reports it loaded only then (minutes at
    512 x 512 x 300); the viewer's widget is served without that call, and "loaded" comes straight from the
    browser's message."""
    from pathlib import Path

    import ipyniivue

    from medimg.viz.viewer_widget import LOAD_ONCE, NO_COPY_BACK, patched_esm

    stock = (Path(ipyniivue.__file__).parent / "static" / "widget.js").read_text(encoding="utf-8")
    assert len(NO_COPY_BACK.findall(stock)) == 1, "the pinned ipyniivue's copy-back call changed: review viewer_widget"
    for what, pattern, _ in LOAD_ONCE:  # the edits that take the layers in once (counted in test_browser_viewer)
        assert len(pattern.findall(stock)) == 1, f"the pinned ipyniivue changed where {what!r} applies"
    esm = patched_esm()
    assert esm is not None and not NO_COPY_BACK.findall(esm)
    assert esm.count("__medimgHold") == 5 and esm.count("__medimgMeshes") == 2 and "__medimgLayerRedraws" in esm
    image, mask, heat = viewer_phantom()
    v = view(image, {"mask": mask, "heatmap": heat})
    assert v.nv.copies_back is False and "loading" in v.status.value
    first = v.nv.volumes[0]
    v.nv._handle_custom_msg({"event": "image_loaded", "data": {"id": first.id, "dims": [3, *SHAPE]}}, [])
    assert first.img is None and v.status.value == ""  # no voxels came back, the loading line is gone


def test_the_wheel_zooms_when_asked_and_the_zoom_resets():
    import ipyniivue

    image, mask, _ = viewer_phantom()
    v = view(image, {"mask": mask})
    assert v.nv.opts.drag_mode == ipyniivue.DragMode.CONTRAST  # the wheel steps through slices
    v.wheel.value = "zoom"
    assert v.nv.opts.drag_mode == ipyniivue.DragMode.PAN  # NiiVue's pan/zoom: the wheel zooms the 2D tiles
    v.nv.scene.pan2d_xyzmm = [4.0, -2.0, 0.0, 2.5]  # as the browser reports a zoom
    v.unzoom.click()
    assert list(v.nv.scene.pan2d_xyzmm) == [0.0, 0.0, 0.0, 1.0]
    v.wheel.value = "scroll"
    assert v.nv.opts.drag_mode == ipyniivue.DragMode.CONTRAST


def test_the_still_images_draw_the_uncertainty_map_and_segments_when_no_heatmap_or_label_is_given():
    from medimg.viz.viewer_layers import still_layers

    image, mask, heat = viewer_phantom()
    segs = Volume(np.asarray(mask.array, dtype=np.uint8) * 2, mask.affine, {"segments": {2: {"label": "lesion"}}})
    v = view(image, {"uncertainty": heat, "seg": segs, "mask": mask})
    layers = still_layers(v.overlays)
    assert layers["heatmap"] is v.overlays["uncertainty"] and layers["label"] is v.overlays["seg"]
    assert layers["title"] == "still images: uncertainty, segments, model's mask"
    v._webgl_answered(False)
    plain = view(image)
    plain._webgl_answered(False)
    assert v.still.value[:4] == b"\x89PNG" and v.still.value != plain.still.value
    both = view(image, {"heatmap": heat, "uncertainty": heat})
    assert still_layers(both.overlays)["title"] == "still images: heatmap (not drawn: uncertainty)"


def test_the_3d_tile_waits_for_a_graphics_card_and_stays_out_on_software_webgl():
    import ipyniivue

    image, mask, _ = viewer_phantom()
    on_cpu = view(image, {"mask": mask})  # default: decided by the browser's renderer
    assert on_cpu.show_3d.value is False and on_cpu.nv.opts.multiplanar_show_render == ipyniivue.ShowRender.NEVER
    on_cpu._probe.renderer = "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader)"
    assert on_cpu.show_3d.value is False and "draws WebGL on the CPU" in on_cpu.notice.value
    on_cpu.show_3d.value = True  # the reader ticks 3D anyway
    assert on_cpu.nv.opts.multiplanar_show_render == ipyniivue.ShowRender.ALWAYS
    on_gpu = view(image, {"mask": mask})
    on_gpu._probe.renderer = "ANGLE (NVIDIA, NVIDIA GeForce RTX 3060 Direct3D11 vs_5_0 ps_5_0, D3D11)"
    assert on_gpu.show_3d.value is True and on_gpu.nv.opts.multiplanar_show_render == ipyniivue.ShowRender.ALWAYS
    assert on_gpu.notice.value == ""
    fixed = view(image, render_3d=False)  # the caller's choice is kept whatever the browser
    fixed._probe.renderer = "ANGLE (NVIDIA, NVIDIA GeForce RTX 3060 Direct3D11 vs_5_0 ps_5_0, D3D11)"
    assert fixed.show_3d.value is False


@pytest.mark.parametrize("where", ["inside", "touching the edges", "empty", "everywhere"])
def test_the_mask_outline_is_the_mask_minus_its_erosion(where):
    """The outline layer, computed within the mask's bounding box, is the whole volume's mask minus its erosion
    (border voxels count as outside), wherever the mask lies."""
    from scipy.ndimage import binary_erosion

    from medimg.viz.viewer_layers import outline

    rng = np.random.default_rng(7)
    m = np.zeros((30, 26, 20), bool)
    if where == "inside":
        m[8:17, 5:20, 6:12] = rng.random((9, 15, 6)) > 0.3
    elif where == "touching the edges":
        m[:9, 20:, 14:] = True
        m[25:, :4, :3] = rng.random((5, 4, 3)) > 0.2
    elif where == "everywhere":
        m[:] = rng.random(m.shape) > 0.1
    expected = (m & ~binary_erosion(m, border_value=0)).astype(np.uint8)
    got = outline(m.astype(np.uint8))
    assert got.dtype == np.uint8 and got.shape == m.shape
    np.testing.assert_array_equal(got, expected)
    assert where == "empty" or got.sum() > 0
