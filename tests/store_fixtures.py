"""Test data for the store, export and ingest-CLI tests.

Registered as a pytest plugin by ``tests/conftest.py`` (as is ``postgres_fixture``, whose
``app_store_url`` the ``store`` fixture uses: on PostgreSQL it logs in as the least-privilege
application role), so the fixtures need no import.  Clips reach the store only through the
real de-identification gate (``echomeasure.ingest.load``) from small DICOM files written here,
whose identifying elements carry canary strings that must never come out of the store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from echomeasure.propose.types import ClipProposals, ModelInfo, Proposal

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"

# Values that identify the (fictional) patient, site and device: none may leave the gate.
CANARIES = {
    "PatientName": "CANARYSURNAME^CANARYGIVEN",
    "PatientID": "CANARYPID4711",
    "PatientBirthDate": "19230417",
    "OtherPatientIDs": "CANARYOTHERID",
    "AccessionNumber": "CANARYACC99",
    "InstitutionName": "CANARY GENERAL HOSPITAL",
    "ReferringPhysicianName": "CANARYDOCTOR^REFERRING",
    "OperatorsName": "CANARYSONOGRAPHER",
    "StudyDescription": "CANARYSTUDYDESC",
    "DeviceSerialNumber": "CANARYSERIAL123",
    "StationName": "CANARYSTATION",
}
CANARY_UID_ROOT = "1.2.826.0.1.3680043.10.543.4242"
CANARY_STRINGS = (
    "CANARY",
    "19230417",
    CANARY_UID_ROOT,
)

MODEL_2D = ModelInfo("plax-linear", "test-1", "a" * 64)


def write_us_dicom(
    path: Path,
    *,
    seed: int = 0,
    n_frames: int = 4,
    height: int = 48,
    width: int = 64,
    cm_per_px: float = 0.05,
    study_suffix: str = "1",
) -> Path:
    """Write a small calibrated 2D ultrasound multi-frame DICOM full of canary identifiers."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n_frames, height, width, 3), dtype=np.uint8)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = f"{CANARY_UID_ROOT}.3.{seed}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"CANARYPREAMBLE".ljust(128, b"\0")
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = f"{CANARY_UID_ROOT}.1.{study_suffix}"
    ds.SeriesInstanceUID = f"{CANARY_UID_ROOT}.2.{seed}"
    ds.Modality = "US"
    ds.StudyDate = "20240102"
    ds.SeriesDate = "20240102"
    for keyword, value in CANARIES.items():
        setattr(ds, keyword, value)
    ds.add_new(0x00090010, "LO", "CANARY VENDOR")
    ds.add_new(0x00091010, "LO", "CANARYPRIVATE")
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = height, width
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = n_frames
    ds.FrameTime = 33.3
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0 = 0
    region.RegionLocationMinY0 = 0
    region.RegionLocationMaxX1 = width - 1
    region.RegionLocationMaxY1 = height - 1
    region.PhysicalUnitsXDirection = 3
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = cm_per_px
    region.PhysicalDeltaY = cm_per_px
    region.ReferencePixelX0 = 0
    region.ReferencePixelY0 = 0
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def lvidd_proposals(model: ModelInfo = MODEL_2D, frame: int = 1) -> ClipProposals:
    """Three PLAX proposals (as the models would make them) for a 64x48 px clip at 0.05 cm/px."""
    items = [
        Proposal("ivsd", frame, ((20.0, 10.0), (20.0, 16.0)), 0.3, "cm", 0.91, model, 6.0),
        Proposal("lvidd", frame, ((20.0, 16.0), (20.0, 40.0)), 1.2, "cm", 0.87, model, 24.0),
        Proposal("lvids", 3, ((20.0, 18.0), (20.0, 36.0)), 0.9, "cm", 0.66, model, 18.0),
    ]
    return ClipProposals(kind="2d", calibration="dicom", model=model, measurements=items, ed_frame=frame, es_frame=3)


@pytest.fixture
def store(app_store_url, tmp_path: Path):
    """An open store on every backend of ``postgres_fixture.app_store_url`` (SQLite, PostgreSQL as
    the application role)."""
    from echomeasure.store import open_store

    s = open_store(app_store_url, images_dir=tmp_path / "images")
    yield s
    s.close()


@pytest.fixture
def dicom_file(tmp_path: Path) -> Path:
    """A small canary-laden 2D DICOM whose file name is itself identifying."""
    folder = tmp_path / "CANARYSURNAME_folder"
    folder.mkdir()
    return write_us_dicom(folder / "CANARYSURNAME_echo.dcm")


@pytest.fixture
def deidentified_clip(dicom_file: Path):
    """The gate's output for ``dicom_file``."""
    from echomeasure import config
    from echomeasure.ingest import load

    return load(dicom_file, secret=config.secret())


def make_deidentified(tmp_path: Path, seed: int, **kwargs):
    """De-identify a freshly written DICOM (seed changes the pixels and UIDs)."""
    from echomeasure import config
    from echomeasure.ingest import load

    return load(write_us_dicom(tmp_path / f"case_{seed}.dcm", seed=seed, **kwargs), secret=config.secret())
