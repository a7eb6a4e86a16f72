"""Mutational fuzzing of the readers: whatever a file holds, ``medimg.load`` returns a Volume or raises MedimgError.

Mutants of real sample files (pydicom's, nibabel's Siemens mosaic) and of series medimg writes: random bit flips,
truncation, and *lying* element values (NaN/infinite rescale, zero or absurd sizes, impossible geometry, a
transfer syntax that does not match the data, a damaged CSA header). Seeded, so a failure names the mutant that
reproduces it. Each mutant is given ``MUTANT_SECONDS``; going past it counts as a hang.

The default run (``make test``) tries ``MEDIMG_FUZZ_MUTANTS`` = 300 mutants in about a minute. The long run::

    MEDIMG_FUZZ_MUTANTS=20000 MEDIMG_FUZZ_SEED=1 .venv/bin/pytest tests/test_io_fuzz.py -q
"""

from __future__ import annotations

import os
import random
import signal
import struct
from collections.abc import Callable

import numpy as np
import pytest
from mosaic_writer import write_mosaics
from tests_support import oblique_affine

from medimg.data.samples import pydicom_file, scanner_files
from medimg.errors import MedimgError
from medimg.io import Volume, load
from medimg.io.dicom.write import write_series

N_MUTANTS = int(os.environ.get("MEDIMG_FUZZ_MUTANTS", "300"))
SEED = int(os.environ.get("MEDIMG_FUZZ_SEED", "0"))
MUTANT_SECONDS = 20

SAMPLES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "JPEG2000.dcm",
    "SC_rgb.dcm",
    "emri_small.dcm",
    "rtdose.dcm",
]

# (tag, new raw value) -- values an exporter or a damaged disk could really produce
LIES: list[tuple[int, bytes]] = [
    (0x00281053, b"nan "),  # Rescale Slope
    (0x00281053, b"inf "),
    (0x00281052, b"-inf"),  # Rescale Intercept
    (0x00281053, b"1e400 "),
    (0x00280030, b"0\\0 "),  # Pixel Spacing
    (0x00280030, b"-1\\1"),
    (0x00280030, b"nan\\nan "),
    (0x00200037, b"0\\0\\0\\0\\0\\0 "),  # Image Orientation (Patient)
    (0x00200037, b"nan\\0\\0\\0\\1\\0 "),
    (0x00200032, b"inf\\0\\0 "),  # Image Position (Patient)
    (0x00200032, b"1.2.3\\x\\"),
    (0x00180050, b"0 "),  # Slice Thickness
    (0x00180088, b"-3"),  # Spacing Between Slices
    (0x00280008, b"99999999"),  # Number of Frames
    (0x00280008, b"0 "),
    (0x00200013, b"1A"),  # Instance Number
    (0x00200011, b"x "),  # Series Number
]
BINARY_LIES: list[tuple[int, int]] = [
    (0x00280010, 0),  # Rows
    (0x00280010, 65535),
    (0x00280011, 1),  # Columns
    (0x00280100, 7),  # Bits Allocated
    (0x00280100, 64),
    (0x00280101, 0),  # Bits Stored
    (0x00280002, 3),  # Samples per Pixel
    (0x00280103, 5),  # Pixel Representation
]


def _find_element(data: bytes, tag: int) -> tuple[int, int, int] | None:
    """(value offset, value length, length-field size) of an explicit or implicit VR LE element, by byte search."""
    key = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    pos = data.find(key, 132)
    if pos < 0 or pos + 8 > len(data):
        return None
    vr = data[pos + 4 : pos + 6]
    if vr.isalpha() and vr.isupper():
        return pos + 8, struct.unpack_from("<H", data, pos + 6)[0], 2
    return pos + 8, struct.unpack_from("<I", data, pos + 4)[0], 4


def _lie(data: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.6:
        tag, value = rng.choice(LIES)
        found = _find_element(data, tag)
        if found is None:
            return data
        start, length, size = found
        value = value + b" " * (len(value) % 2)
        out = bytearray(data[: start - size] + (struct.pack("<H", len(value)) if size == 2 else b"") + b"")
        if size == 4:
            out = bytearray(data[: start - 4] + struct.pack("<I", len(value)))
        return bytes(out) + value + data[start + length :]
    tag, number = rng.choice(BINARY_LIES)
    found = _find_element(data, tag)
    if found is None or found[1] != 2:
        return data
    start = found[0]
    return data[:start] + struct.pack("<H", number) + data[start + 2 :]


def _flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    # damage the header more often than the pixels: that is where parsers break
    limit = min(len(out), 4096) if rng.random() < 0.8 else len(out)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(limit)] ^= 1 << rng.randrange(8)
    return bytes(out)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [_flip, _flip, _truncate, _lie, _lie]


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[tuple[str, bytes]]:
    root = tmp_path_factory.mktemp("corpus")
    files = [(name, pydicom_file(name).read_bytes()) for name in SAMPLES]
    (written,) = write_series(
        Volume(np.arange(8 * 6 * 1, dtype=np.int16).reshape(8, 6, 1), oblique_affine((10, 0, 5), (1, 1, 2), (0, 0, 0))),
        root / "ct",
        modality="CT",
        rescale=(1.0, -1024.0),
    )
    files.append(("written_ct", written.read_bytes()))
    (mosaic,) = write_mosaics(Volume(np.ones((8, 6, 5), np.int16), np.eye(4)), root / "mosaic", b_values=[1000],
                              gradients_lps=[(1.0, 0.0, 0.0)])  # fmt: skip
    files.append(("written_mosaic", mosaic.read_bytes()))
    real = scanner_files(["siemens_dwi_b1000"], root / "real")
    files.append(("siemens_dwi_b1000", (real / "siemens_dwi_1000.dcm").read_bytes()))
    return files


def test_every_mutant_gives_a_volume_or_a_medimg_error(corpus, tmp_path):
    rng = random.Random(SEED)
    outcomes = {"volume": 0, "error": 0}
    failures: list[str] = []
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for n in range(N_MUTANTS):
            name, data = rng.choice(corpus)
            mutate = rng.choice(MUTATIONS)
            mutant = mutate(data, rng)
            path = tmp_path / f"mutant{n % 8}.dcm"
            path.write_bytes(mutant)
            signal.alarm(MUTANT_SECONDS)
            try:
                result = load(path)
                assert isinstance(result, Volume)
                outcomes["volume"] += 1
            except MedimgError as exc:
                outcomes["error"] += 1
                if str(path) not in str(exc) or "\n" in str(exc):
                    failures.append(f"mutant {n} ({mutate.__name__} of {name}): not one line naming the file: {exc!r}")
            except _Hang:
                failures.append(f"mutant {n} ({mutate.__name__} of {name}, seed {SEED}): hang > {MUTANT_SECONDS} s")
            except BaseException as exc:  # this is what the test looks for (incl. PanicException)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(f"mutant {n} ({mutate.__name__} of {name}, seed {SEED}): {type(exc).__name__}: {exc}")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, old)
    print(f"{N_MUTANTS} mutants: {outcomes['volume']} volumes, {outcomes['error']} MedimgErrors")
    assert not failures, "\n".join(failures[:20])
    assert outcomes["error"] > N_MUTANTS // 10 and outcomes["volume"] > N_MUTANTS // 20  # the mutations really bite


def test_a_damaged_file_in_a_series_folder_is_skipped_or_refused(tmp_path):
    rng = random.Random(SEED + 1)
    truth = Volume(np.arange(10 * 8 * 6, dtype=np.int16).reshape(10, 8, 6), np.diag([1.0, 1.0, 2.5, 1.0]))
    for n in range(40):
        folder = tmp_path / f"series{n}"
        paths = write_series(truth, folder, modality="CT", seed=n)
        victim = rng.choice(paths)
        victim.write_bytes(rng.choice(MUTATIONS)(victim.read_bytes(), rng))
        try:
            got = load(folder)
        except MedimgError:
            continue
        assert isinstance(got, Volume)
