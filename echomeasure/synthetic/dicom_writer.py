"""Write synthetic cines and Doppler strips as DICOM, with obviously fake identifying data.

- Cines: US Multi-frame Image Storage; Doppler strips: US Image Storage.
- Sequence of Ultrasound Regions (0018,6011) with the calibration of every region.
- Pixel data: RGB uncompressed (Explicit VR Little Endian) or JPEG Baseline (YBR_FULL_422,
  frames encoded with Pillow and encapsulated; pydicom cannot encode JPEG itself).
- Identity: fake name / ID / dates / institution / physicians / device serials, a private tag
  block repeating the name, and the 128-byte preamble carrying the name too (real files have
  been seen with PHI there): every synthetic file exercises the de-identification.

Everything is a pure function of its inputs (UIDs derived from the seed, dates fixed), so the
same seed writes byte-identical files.  Non-identifying strings (manufacturer, model, software,
descriptions) say "SIMULATED", never a word of the fake identity, so that a gate that looks for
every word of the original identity in the output does not trip on the device description.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit

from echomeasure import atomic
from echomeasure.ingest.clip import Region
from echomeasure.synthetic.overlays import FakeIdentity, stable_uid

US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
PRIVATE_CREATOR = "ECHOMEASURE SYNTHETIC"
JPEG_QUALITY = 90


def _ds_str(value: float) -> str:
    """A DICOM DS string (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8g}"


def build_dataset(
    frames: np.ndarray,
    regions: tuple[Region, ...],
    identity: FakeIdentity,
    *,
    seed: int,
    case_index: int,
    kind: str,
    frame_time_ms: float | None,
    heart_rate_bpm: float | None,
    jpeg: bool,
    description: str,
) -> FileDataset:
    """The DICOM dataset of one synthetic case (cine when ``frames`` has more than one frame)."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim == 3:
        frames = frames[None]
    multiframe = kind != "doppler"  # "2d" (PLAX) and the apical views are cines
    sop_class = US_MULTIFRAME_STORAGE if multiframe else US_IMAGE_STORAGE
    study_uid = stable_uid("study", seed, case_index)
    series_uid = stable_uid("series", seed, case_index, kind)
    sop_uid = stable_uid("instance", seed, case_index, kind)

    meta = _file_meta(sop_class, sop_uid, jpeg)
    preamble = (f"{identity.patient_name} {identity.patient_id} {identity.birth_date}".encode("ascii") + b"\0" * 128)[:128]
    ds = FileDataset("", {}, file_meta=meta, preamble=preamble)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "0001"] if multiframe else ["ORIGINAL", "PRIMARY", "", "0010"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    _set_identity(ds, identity, description)
    if heart_rate_bpm is not None:
        ds.HeartRate = int(round(heart_rate_bpm))
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"S{case_index:04d}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = "YES"
    ds.SequenceOfUltrasoundRegions = DicomSequence([r.to_dicom_item() for r in regions])
    _set_image_pixel_module(ds, frames, multiframe, frame_time_ms)

    private = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
    private.add_new(0x01, "LO", identity.patient_name)
    private.add_new(0x02, "LO", f"MRN {identity.patient_id} DOB {identity.birth_date}")

    _set_pixel_data(ds, frames, jpeg)
    return ds


def _file_meta(sop_class: str, sop_uid: str, jpeg: bool) -> FileMetaDataset:
    """The file meta information of a synthetic instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(stable_uid("implementation", "echomeasure-synthetic"))
    meta.ImplementationVersionName = "ECHOMEASURE_SIM"
    return meta


def _set_identity(ds: FileDataset, identity: FakeIdentity, description: str) -> None:
    """Dates, people, places and devices of the fake identity (what de-identification must remove)."""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = identity.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = identity.study_time
    ds.AcquisitionDateTime = identity.study_date + identity.study_time
    ds.AccessionNumber = identity.accession_number
    ds.Modality = "US"
    ds.Manufacturer = "echomeasure simulator"
    ds.InstitutionName = identity.institution
    ds.InstitutionAddress = "1 FAKE STREET, NOWHERE"
    ds.ReferringPhysicianName = identity.referring_physician
    ds.StationName = identity.station_name
    ds.StudyDescription = "SIMULATED ECHO"
    ds.SeriesDescription = description
    ds.PerformingPhysicianName = identity.performing_physician
    ds.OperatorsName = identity.operator
    ds.ManufacturerModelName = "SIM-PLAX"
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.birth_date
    ds.PatientSex = identity.sex
    ds.OtherPatientIDs = identity.patient_id + "-OLD"
    ds.PatientComments = f"fake record of {identity.patient_name}"
    ds.DeviceSerialNumber = identity.device_serial
    ds.SoftwareVersions = "echomeasure-sim 1"
    ds.TransducerData = ["P4-2", identity.device_serial]


def _set_image_pixel_module(ds: FileDataset, frames: np.ndarray, multiframe: bool, frame_time_ms: float | None) -> None:
    """RGB 8-bit image attributes, and the cine timing of a multi-frame instance."""
    n, h, w, _ = frames.shape
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.Rows = h
    ds.Columns = w
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if multiframe:
        ds.NumberOfFrames = n
        ds.FrameIncrementPointer = pydicom.tag.Tag(0x0018, 0x1063)
        ds.FrameTime = _ds_str(float(frame_time_ms or 0.0))
        ds.CineRate = int(round(1000.0 / frame_time_ms)) if frame_time_ms else 0
        ds.RecommendedDisplayFrameRate = ds.CineRate
        ds.EffectiveDuration = _ds_str(n * float(frame_time_ms or 0.0) / 1000.0)


def _set_pixel_data(ds: FileDataset, frames: np.ndarray, jpeg: bool) -> None:
    """The frames as JPEG Baseline (YBR_FULL_422, encapsulated) or uncompressed RGB."""
    if jpeg:
        encoded = []
        for f in frames:
            buf = io.BytesIO()
            Image.fromarray(f, mode="RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=1, optimize=False)
            encoded.append(buf.getvalue())
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        ratio = frames.nbytes / max(1, sum(len(e) for e in encoded))
        ds.LossyImageCompressionRatio = _ds_str(round(ratio, 2))
        ds.PixelData = encapsulate(encoded, has_bot=True)
        ds["PixelData"].VR = "OB"
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = frames.tobytes()
        ds["PixelData"].VR = "OB"


def write_dataset_atomic(ds: FileDataset, path: str | Path) -> None:
    """Write ``ds`` to ``path`` atomically (:func:`echomeasure.atomic.atomic_path`), creating the folder."""
    with atomic.atomic_path(path, make_parents=True) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
