"""Case lists: MSD dataset.json, CSV manifests (NIfTI and DICOM folders), deterministic k-fold splits."""

from __future__ import annotations

import re

import pytest

from medimg.data.datasets import kfold_split, read_csv_manifest, read_msd
from medimg.data.phantoms import make_phantom_msd
from medimg.errors import ConfigError
from medimg.io.dicom.write import write_series


@pytest.mark.parametrize(("n", "k"), [(10, 5), (7, 3), (2, 5)])
def test_kfold_is_a_deterministic_partition(n, k):
    folds = [kfold_split(n, k, f, seed=3) for f in range(min(k, n))]
    vals = sorted(i for _, v in folds for i in v)
    assert vals == list(range(n))  # every case validated exactly once
    for train, val in folds:
        assert not set(train) & set(val) and sorted(train + val) == list(range(n))
    assert kfold_split(n, k, 0, seed=3) == folds[0]
    assert kfold_split(n, k, 0, seed=4) != folds[0] or n <= 2


def test_msd_and_csv_manifest_with_a_dicom_case(tmp_path, phantom):
    root = make_phantom_msd(tmp_path / "Task", n_cases=3, n_test=1)
    cases = read_msd(root)
    assert len(cases.training) == 3 and len(cases.test) == 1 and cases.num_classes == 2
    digest = cases.digest()
    assert len(digest) == 64 and digest == read_msd(root).digest()
    write_series(phantom(shape=(8, 8, 4)), tmp_path / "dicom_case")
    (tmp_path / "cases.csv").write_text(
        "image,label\nTask/imagesTr/Phantom_000.nii.gz,Task/labelsTr/Phantom_000.nii.gz\n"
        "dicom_case,Task/labelsTr/Phantom_001.nii.gz\nTask/imagesTs/Phantom_003.nii.gz,\n"
    )
    manifest = read_csv_manifest(tmp_path / "cases.csv")
    assert len(manifest.training) == 2 and len(manifest.test) == 1
    assert manifest.training[1]["image"].endswith("dicom_case")


def test_bad_case_lists_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset\.json"):
        read_msd(tmp_path)
    (tmp_path / "cases.csv").write_text("image,label\nmissing.nii.gz,missing_label.nii.gz\n")
    with pytest.raises(ConfigError, match="does not exist"):
        read_csv_manifest(tmp_path / "cases.csv")
    with pytest.raises(ConfigError, match="fold must be"):
        kfold_split(5, 5, 7)


def test_nnunet_raw_layout_is_read_as_it_is(tmp_path):
    from medimg.data.datasets import read_dataset, read_nnunet_raw
    from medimg.data.phantoms import make_phantom_nnunet
    from medimg.transforms.pipelines import LoadVolumed

    root = make_phantom_nnunet(tmp_path / "Dataset007_Two", n_cases=3, shape=(12, 10, 6), channels=("CT", "PET"))
    cases = read_dataset(root)
    assert cases == read_nnunet_raw(root)
    assert len(cases.training) == 3 and cases.in_channels == 2 and cases.labels == {0: "background", 1: "organ"}
    first = cases.training[0]
    assert [p.rsplit("/", 1)[1] for p in first["image"]] == ["Phantom_000_0000.nii.gz", "Phantom_000_0001.nii.gz"]
    assert first["label"].endswith("labelsTr/Phantom_000.nii.gz")
    item = LoadVolumed(["image", "label"])(first)
    assert tuple(item["image"].shape) == (2, 12, 10, 6) and tuple(item["label"].shape) == (1, 12, 10, 6)
    assert len(cases.digest()) == 64


def test_nnunet_raw_bad_layouts_are_config_errors(tmp_path):
    import json

    from medimg.data.datasets import read_nnunet_raw
    from medimg.data.phantoms import make_phantom_nnunet

    root = make_phantom_nnunet(tmp_path / "Dataset008_Bad", n_cases=2, shape=(8, 8, 4))
    (root / "labelsTr" / "Phantom_001.nii.gz").unlink()
    with pytest.raises(ConfigError, match="case Phantom_001 has no label"):
        read_nnunet_raw(root)
    spec = json.loads((root / "dataset.json").read_text())
    spec["labels"] = {"background": 0, "whole": [1, 2]}
    (root / "dataset.json").write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match="region"):
        read_nnunet_raw(root)


@pytest.mark.parametrize(
    ("values", "refused"),
    [([0, 1], None), ([0], None), ([0, 1, 3], "[3]"), ([0, 2, 7], "[2, 7]")],
)
def test_one_check_refuses_label_values_the_dataset_does_not_declare(values, refused, tmp_path):
    from medimg.data.datasets import refuse_undeclared_labels

    labels = {0: "background", 1: "organ"}
    if refused is None:
        refuse_undeclared_labels("case_01", values, labels, tmp_path / "l.nii.gz")
        return
    with pytest.raises(ConfigError, match=re.escape(f"case case_01: label values {refused} are not classes")) as info:
        refuse_undeclared_labels("case_01", values, labels, tmp_path / "l.nii.gz")
    assert info.value.path == str(tmp_path / "l.nii.gz")
