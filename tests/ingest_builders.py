"""Builders for small ingest test files (no tests here): canary DICOM, banner videos.

Every identifying element carries a distinct canary string so a test can prove that none of
them survives de-identification anywhere in the output bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

CANARIES = {
    "PatientName": "CANARYNAME^PATIENTFIRST",
    "PatientID": "CANARYPID77",
    "ReferringPhysicianName": "CANARYREFERRER^DOC",
    "PerformingPhysicianName": "CANARYPERFORMER^DOC",
    "OperatorsName": "CANARYOPERATOR^SONO",
    "InstitutionName": "CANARY GENERAL HOSPITAL",
    "InstitutionAddress": "1 CANARY STREET, CANARYTOWN",
    "StationName": "CANARYSTATION",
    "DeviceSerialNumber": "CANARYSERIAL",
    "TransducerData": "CANARYPROBE",
    "AccessionNumber": "CANARYACC9",
    "StudyDescription": "CANARY STUDY DESC",
    "SeriesDescription": "CANARY SERIES DESC",
    "ImageComments": "CANARY IMAGE COMMENT",
    "PatientComments": "CANARY PATIENT COMMENT",
}
PRIVATE_CANARY = "CANARYPRIVATE"
NESTED_CANARY = "CANARYNESTED^PHYSICIAN"
PREAMBLE_CANARY = b"CANARYPREAMBLE"
BIRTH_DATE = "19510317"
STUDY_DATE = "20240115"
UIDS = {
    "StudyInstanceUID": "1.2.3.4.5.6.7.100",
    "SeriesInstanceUID": "1.2.3.4.5.6.7.200",
    "SOPInstanceUID": "1.2.3.4.5.6.7.300",
    "FrameOfReferenceUID": "1.2.3.4.5.6.7.400",
}
# 2D region: x 40..119, y 30..89 (max inclusive); banner rows 0..19 above it.
REGION = (40, 30, 119, 89)
BANNER_ROWS = slice(2, 18)
ROWS, COLS = 100, 160
CM_PER_PX = 0.05


def canary_frames(n_frames: int = 10, rows: int = ROWS, cols: int = COLS, seed: int = 0) -> np.ndarray:
    """Frames with moving speckle inside the region, a bright static banner, grey elsewhere."""
    rng = np.random.default_rng(seed)
    frames = np.full((n_frames, rows, cols, 3), 40, dtype=np.uint8)
    x0, y0, x1, y1 = REGION
    frames[:, y0 : y1 + 1, x0 : x1 + 1] = rng.integers(30, 220, size=(n_frames, y1 - y0 + 1, x1 - x0 + 1, 3), dtype=np.uint8)
    frames[:, BANNER_ROWS, 10:150] = 250
    return frames


def canary_dataset(n_frames: int = 10, *, spectral: bool = False) -> Dataset:
    """A multi-frame US dataset with a canary in every identifying element and one 2D region."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    meta.MediaStorageSOPInstanceUID = UIDS["SOPInstanceUID"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "CANARYAE"
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = PREAMBLE_CANARY.ljust(128, b"\x01")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.Modality = "US"
    for k, v in CANARIES.items():
        setattr(ds, k, v)
    for k, v in UIDS.items():
        setattr(ds, k, v)
    ds.PatientBirthDate = BIRTH_DATE
    ds.StudyDate = STUDY_DATE
    ds.SeriesDate = STUDY_DATE
    ds.ContentDate = STUDY_DATE
    ds.StudyTime = "101500"
    ds.Manufacturer = "Synthetic Echo Co"
    ds.BurnedInAnnotation = "YES"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"
    ref.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.999"
    ds.ReferencedPerformedProcedureStepSequence = Sequence([ref])
    nested = Dataset()
    nested.PersonName = NESTED_CANARY
    nested.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.888"
    code = Dataset()
    code.CodeValue = "121000"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Anything"
    ds.AcquisitionContextSequence = Sequence([nested])
    ds.ProcedureCodeSequence = Sequence([code])
    ds.add_new(0x00091010, "LO", "CANARY CREATOR")
    ds.add_new(0x00091001, "LO", PRIVATE_CANARY)
    ds.FrameTime = "20.0"
    x0, y0, x1, y1 = REGION
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = x0, y0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x1, y1
    region.PhysicalUnitsXDirection = 3
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = CM_PER_PX
    region.PhysicalDeltaY = CM_PER_PX
    region.ReferencePixelX0 = 0
    region.ReferencePixelY0 = 0
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    frames = canary_frames(n_frames)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.NumberOfFrames = n_frames
    ds.PixelData = frames.tobytes()
    return ds


def write_canary_dicom(path: Path, n_frames: int = 10, **kw) -> Path:
    ds = canary_dataset(n_frames, **kw)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


VIDEO_CANARIES = {"title": "CANARYVIDEOTITLE", "comment": "CANARYVIDEOCOMMENT Jane Doe", "artist": "CANARYARTIST"}


def write_banner_video(path: Path, container: str, n_frames: int = 12, codec: str | None = None) -> np.ndarray:
    """A small video with container metadata canaries, a moving sector and a static banner."""
    import av

    rng = np.random.default_rng(1)
    frames = np.full((n_frames, 96, 128, 3), 0, dtype=np.uint8)
    yy, xx = np.mgrid[0:96, 0:128]
    sector = ((xx - 64) ** 2 + (yy - 20) ** 2 < 70**2) & (yy > 30) & (np.abs(xx - 64) < (yy - 20))
    for i in range(n_frames):
        f = frames[i]
        f[sector] = rng.integers(40, 230, size=(int(sector.sum()), 3), dtype=np.uint8)
    frames[:, 4:14, 8:120] = 255  # banner
    with av.open(str(path), "w", format=container) as out:
        for k, v in VIDEO_CANARIES.items():
            out.metadata[k] = v
        out.metadata["creation_time"] = "2024-01-15T10:15:00.000000Z"
        s = out.add_stream(codec or ("libx264" if container == "mp4" else "ffv1"), rate=25)
        s.width, s.height = 128, 96
        s.pix_fmt = "yuv444p" if (codec or "libx264") == "libx264" and container == "mp4" else "bgr0"
        if container == "mp4":
            s.options = {"crf": "0"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return frames
