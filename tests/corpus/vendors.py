"""Ultrasound DICOM files fabricated the way the big vendors write them (no tests here).

Each builder writes one file with the header layout, private creators, private sequences and
pixel encoding typical of a vendor's echo export, an identifying value in every place real
files carry one (patient module, institution, operators, private copies of the name, free text,
a contact name written in another order, retired order numbers, device IDs), nested pixel data
in an icon sequence and in a private sequence, an overlay and a curve, and burned-in text in
the pixels: a banner above the image, and a label inside the region rectangle but outside the
fan.  :data:`VENDORS` lists the builders; :func:`real_ultrasound_files` the real files that
public test-data packages installed here carry.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_SOP_CLASSES = {US_MULTIFRAME, US_IMAGE, "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3"}
ROWS, COLS = 240, 320
# 2D region and the fan inside it (apex at the top centre).
REGION_2D = (8, 30, 311, 209)
FAN_APEX = (160, 34)
FAN_RADIUS = 170
FAN_HALF_ANGLE_DEG = 38
BANNER = (4, 4, 300, 22)  # x0, y0, x1, y1 of the burned-in banner (outside every region)
CORNER_LABEL = (12, 34, 102, 50)  # inside the region rectangle, outside the fan


@dataclass
class VendorFile:
    """One fabricated file and what it must lose."""

    vendor: str
    path: Path
    identifiers: list[str]  # original identifying values; none may survive de-identification
    has_calibration: bool
    text_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # burned-in text (x0, y0, x1, y1)
    fan: np.ndarray | None = None  # (rows, cols) bool: the imaging sector


def fan_mask(rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """The imaging sector: a circular sector with its apex at the top centre."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    dx, dy = xx - FAN_APEX[0], yy - FAN_APEX[1]
    r = np.hypot(dx, dy)
    angle = np.degrees(np.arctan2(dx, np.maximum(dy, 1e-6)))
    return (r <= FAN_RADIUS) & (dy > 0) & (np.abs(angle) <= FAN_HALF_ANGLE_DEG)


def _put_text(img: np.ndarray, text: str, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    scale = (y1 - y0) / 22.0
    cv2.putText(img, text, (x0 + 2, y1 - 3), cv2.FONT_HERSHEY_SIMPLEX, max(scale, 0.35), (235, 235, 235), 1, cv2.LINE_AA)


def echo_frames(n: int, banner: str, corner: str, *, seed: int = 0, doppler: bool = False) -> np.ndarray:
    """(n, ROWS, COLS, 3) uint8: moving speckle in the fan, a banner and a corner label burned in."""
    rng = np.random.default_rng(seed)
    fan = fan_mask()
    frames = np.zeros((n, ROWS, COLS, 3), dtype=np.uint8)
    base = rng.integers(20, 200, size=(ROWS, COLS), dtype=np.uint8)
    for i in range(n):
        speckle = np.roll(base, i * 3, axis=0) // 2 + rng.integers(0, 90, size=(ROWS, COLS), dtype=np.uint8)
        frames[i][fan] = speckle[fan][:, None]
        _put_text(frames[i], banner, BANNER)
        _put_text(frames[i], corner, CORNER_LABEL)
        if doppler:  # a spectral strip below the 2D image
            strip = frames[i, 214:238, 10:310]
            strip[:] = rng.integers(0, 60, size=strip.shape, dtype=np.uint8)
            strip[:, ::7] = 200
    return frames


def _region(box, fmt: int, dtype: int, ux: int, uy: int, dx: float, dy: float, ref=(0, 0), ref_phys_y=0.0) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat, r.RegionDataType, r.RegionFlags = fmt, dtype, 0
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box
    r.PhysicalUnitsXDirection, r.PhysicalUnitsYDirection = ux, uy
    r.PhysicalDeltaX, r.PhysicalDeltaY = dx, dy
    r.ReferencePixelX0, r.ReferencePixelY0 = ref
    r.ReferencePixelPhysicalValueX, r.ReferencePixelPhysicalValueY = 0.0, ref_phys_y
    r.TransducerFrequency = 2500
    return r


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


@dataclass(frozen=True)
class Person:
    """The identifying values of one fabricated patient and site."""

    family: str
    given: str
    patient_id: str
    birth_date: str
    institution: str
    operator: str
    referrer: str
    station: str
    serial: str
    accession: str

    @property
    def dicom_name(self) -> str:
        return f"{self.family}^{self.given}"

    def values(self) -> list[str]:
        return [self.family, self.given, self.patient_id, self.birth_date, self.institution, self.operator.split("^")[0],
                self.referrer.split("^")[0], self.station, self.serial, self.accession]


def base_dataset(person: Person, *, manufacturer: str, model: str, sop: str = US_MULTIFRAME,
                 study_uid_root: str = "1.2.840.99999") -> Dataset:
    """The patient, study, series, equipment and free-text modules as a vendor writes them."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = f"{study_uid_root}.3.{zlib.crc32(person.patient_id.encode())}"
    ds.file_meta.SourceApplicationEntityTitle = person.station[:16]
    ds.preamble = (person.dicom_name.encode() + b"\x00").ljust(128, b"\x00")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "0001"]
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20240611"
    ds.StudyTime = ds.ContentTime = "093012"
    ds.AccessionNumber = person.accession
    ds.Modality = "US"
    ds.Manufacturer = manufacturer
    ds.InstitutionName = person.institution
    ds.InstitutionAddress = f"12 Harbour Road, {person.institution.split()[0]}ville"
    ds.ReferringPhysicianName = person.referrer
    ds.StationName = person.station
    ds.StudyDescription = "ECHOCARDIOGRAM"
    ds.SeriesDescription = "Adult Echo"
    ds.PerformingPhysicianName = person.operator
    ds.OperatorsName = person.operator
    ds.ManufacturerModelName = model
    ds.PatientName = person.dicom_name
    ds.PatientID = person.patient_id
    ds.PatientBirthDate = person.birth_date
    ds.PatientSex = "F"
    ds.OtherPatientIDs = person.patient_id + "-B"
    ds.PatientComments = f"{person.given} {person.family} referred for dyspnoea"
    ds.DeviceSerialNumber = person.serial
    ds.DeviceID = person.serial + "-D"
    ds.SoftwareVersions = "v204.1.0"
    ds.StudyInstanceUID = f"{study_uid_root}.1.{zlib.crc32(person.family.encode())}"
    ds.SeriesInstanceUID = f"{study_uid_root}.2.{zlib.crc32(person.given.encode())}"
    ds.StudyID = person.accession[-6:]
    ds.SeriesNumber = "1"
    ds.InstanceNumber = "1"
    ds.HeartRate = "72"
    ds.ImageComments = f"{person.family.upper()} follow-up"
    ds.ContactDisplayName = f"{person.given} {person.family}"  # the other order, another separator
    ds.PlacerOrderNumberImagingServiceRequestRetired = person.accession + "P"
    ds.SubstanceAdministrationNotes = f"contrast given by {person.operator.split('^')[0]}"
    ds.ViewCodeSequence = Sequence([_code("399214001", "SCT", "Parasternal long axis")])
    ds.AnatomicRegionSequence = Sequence([_code("80891009", "SCT", "Heart")])
    icon = Dataset()  # nested pixel data in an unlisted standard sequence
    icon.Rows, icon.Columns, icon.SamplesPerPixel, icon.BitsAllocated, icon.BitsStored, icon.HighBit = 16, 16, 1, 8, 8, 7
    icon.PhotometricInterpretation, icon.PixelRepresentation = "MONOCHROME2", 0
    icon.PixelData = (person.dicom_name.encode() * 64)[:256]
    ds.IconImageSequence = Sequence([icon])
    other = Dataset()  # a referenced-study style item holding another person's name
    other.PersonName = person.operator
    other.ReferencedSOPInstanceUID = f"{study_uid_root}.9.1"
    ds.AcquisitionContextSequence = Sequence([other])
    ds.add_new(0x60000010, "US", 16)  # an overlay plane
    ds.add_new(0x60000011, "US", 16)
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60003000, "OW", (person.family.encode() * 32)[:32])
    ds.add_new(0x50000005, "US", 1)  # a curve (retired) with the name in its label
    ds.add_new(0x50002500, "LO", person.dicom_name)
    return ds


def _add_private(ds: Dataset, group: int, creator: str, items: dict[int, tuple[str, object]]) -> None:
    block = ds.private_block(group, creator, create=True)
    for offset, (vr, value) in items.items():
        block.add_new(offset, vr, value)


def _private_movie_sequence(person: Person) -> Sequence:
    inner = Dataset()
    inner.add_new(0x7FE10010, "LO", "GEMS_Ultrasound_MovieGroup_001")
    inner.add_new(0x7FE11002, "LO", "Tissue")
    inner.add_new(0x7FE11060, "OB", np.arange(512, dtype=np.uint8).tobytes() + person.dicom_name.encode())
    return Sequence([inner])


def _set_pixels(ds: Dataset, frames: np.ndarray, *, photometric: str = "RGB") -> None:
    n, h, w, _ = frames.shape
    ds.Rows, ds.Columns = h, w
    ds.NumberOfFrames = n
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = "33.3"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if photometric == "RGB":
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.PixelData = frames.tobytes()
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.PixelData = np.ascontiguousarray(frames[..., 0]).tobytes()


def _jpeg_baseline(ds: Dataset, frames: np.ndarray) -> None:
    _set_pixels(ds, frames)
    fragments = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        fragments.append(buf.tobytes())
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit


def _write(ds: Dataset, path: Path, ts=ExplicitVRLittleEndian) -> Path:
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = ts
    ts = ds.file_meta.TransferSyntaxUID
    ds.save_as(path, enforce_file_format=True, implicit_vr=ts == ImplicitVRLittleEndian,
               little_endian=ts != ExplicitVRBigEndian)
    return path


PEOPLE = {
    "GE": Person("Lindqvist", "Astrid", "GE4471023", "19620304", "Sahlgrenska Heart Centre", "Berg^Ulla", "Nyman^Per",
                 "VIVIDE95-CARD2", "VE95-118342", "A20240611GE"),
    "Siemens": Person("Okafor", "Chinedu", "S99120455", "19580912", "Lagos Cardiac Institute", "Adeyemi^Tunde",
                      "Eze^Ngozi", "SC2000-ECHO1", "SC2-99831", "ACC5588120"),
    "Canon": Person("Takahashi", "Haruka", "TK7730981", "19710122", "Kyoto Junction Hospital", "Mori^Kenji",
                    "Sato^Yui", "APLIOI900-3", "AI9-550271", "KJ0098812"),
    "SonoSite": Person("Fitzgerald", "Siobhan", "SN5561200", "19850630", "Galway Bay Clinic", "Walsh^Eoin",
                       "Byrne^Ciara", "XPORTE-ED4", "XP-0448812", "GBC771230"),
    "Hitachi": Person("Yamamoto", "Daichi", "HA3319874", "19490805", "Osaka Riverside Hospital", "Inoue^Rin",
                      "Kato^Sho", "PROSOUND-F75", "F75-220981", "OR5521098"),
    "Samsung": Person("Kwon", "Seo-yeon", "SM8812034", "19900214", "Busan Harbour Medical", "Park^Jiho",
                      "Lim^Hana", "HS70A-ROOM2", "HS7-771203", "BH2231187"),
    "Esaote": Person("Bianchi", "Giulia", "ES2209187", "19670418", "Ospedale San Rocco", "Ferri^Marco",
                     "Conti^Elena", "MYLAB7-ECO", "ML7-330918", "SR1198723"),
    "Philips": Person("Vandenberg", "Pieter", "PH6610293", "19550727", "Leiden Cardiology Centre", "de Vries^Sanne",
                      "Jansen^Bram", "EPIQ7C-ECHO", "EP7-441209", "LC8812034"),
}


def _finish(vendor: str, ds: Dataset, path: Path, frames: np.ndarray, *, calibrated: bool = True, ts=None) -> VendorFile:
    person = PEOPLE[vendor]
    _write(ds, path, ts or ExplicitVRLittleEndian)
    return VendorFile(vendor, path, person.values(), calibrated, [BANNER, CORNER_LABEL], fan_mask())


def _banner(person: Person) -> str:
    return f"{person.family.upper()} {person.given.upper()}  {person.patient_id}  11/06/2024"


def ge_vivid(d: Path) -> VendorFile:
    """GE Vivid E95: JPEG Baseline YBR cine, GEMS private groups, a private movie sequence with raw data."""
    p = PEOPLE["GE"]
    ds = base_dataset(p, manufacturer="GE Vingmed Ultrasound", model="Vivid E95")
    frames = echo_frames(12, _banner(p), p.family.upper()[:6], seed=1)
    _jpeg_baseline(ds, frames)
    ds.SequenceOfUltrasoundRegions = Sequence([_region(REGION_2D, 1, 1, 3, 3, 0.0312, 0.0312)])
    _add_private(ds, 0x0009, "GEMS_IDEN_01", {0x01: ("LO", p.dicom_name), 0x02: ("SH", p.patient_id)})
    _add_private(ds, 0x6003, "GEMS_Ultrasound_ImageGroup_001", {0x10: ("LO", "OB_GENERAL"), 0x12: ("LO", p.station)})
    _add_private(ds, 0x7FE1, "GEMS_Ultrasound_MovieGroup_001", {0x01: ("SQ", _private_movie_sequence(p))})
    return _finish("GE", ds, d / "ge_vivid_e95.dcm", frames)


def siemens_sc2000(d: Path) -> VendorFile:
    """Siemens ACUSON SC2000: native RGB, 2D + PW Doppler regions (multi-region), SIEMENS privates."""
    p = PEOPLE["Siemens"]
    ds = base_dataset(p, manufacturer="SIEMENS", model="ACUSON SC2000")
    frames = echo_frames(8, _banner(p), p.family.upper()[:6], seed=2, doppler=True)
    _set_pixels(ds, frames)
    ds.SequenceOfUltrasoundRegions = Sequence([
        _region((40, 30, 279, 209), 1, 1, 3, 3, 0.025, 0.025),
        _region((10, 214, 309, 237), 3, 3, 4, 7, 0.004, -2.5, ref=(0, 12), ref_phys_y=0.0),
        _region((10, 212, 309, 213), 4, 10, 4, 0, 0.004, 0.0),  # ECG trace
    ])
    _add_private(ds, 0x0019, "SIEMENS Ultrasound SC2000", {0x0C: ("LO", p.dicom_name), 0x20: ("LO", "CARDIAC_ADULT")})
    _add_private(ds, 0x0029, "SIEMENS MEDCOM HEADER", {0x10: ("OB", b"SV10" + p.patient_id.encode() + b"\x00" * 40)})
    return _finish("Siemens", ds, d / "siemens_sc2000_doppler.dcm", frames)


def canon_aplio(d: Path) -> VendorFile:
    """Canon (Toshiba) Aplio i900: MONOCHROME2 8-bit, Implicit VR Little Endian, TOSHIBA_MEC_US privates."""
    p = PEOPLE["Canon"]
    ds = base_dataset(p, manufacturer="CANON_MEC", model="TUS-AI900")
    frames = echo_frames(6, _banner(p), p.family.upper()[:6], seed=3)
    _set_pixels(ds, frames, photometric="MONOCHROME2")
    ds.SequenceOfUltrasoundRegions = Sequence([_region(REGION_2D, 1, 1, 3, 3, 0.0288, 0.0288)])
    _add_private(ds, 0x0029, "TOSHIBA_MEC_US3", {0x01: ("LO", p.dicom_name), 0x02: ("LO", "ADULT_CARDIAC")})
    _add_private(ds, 0x7005, "TOSHIBA_MEC_CT3", {0x10: ("LO", p.station)})
    return _finish("Canon", ds, d / "canon_aplio_i900.dcm", frames, ts=ImplicitVRLittleEndian)


def sonosite_xporte(d: Path) -> VendorFile:
    """FUJIFILM SonoSite X-Porte: single-frame still (Ultrasound Image Storage), JPEG Baseline."""
    p = PEOPLE["SonoSite"]
    ds = base_dataset(p, manufacturer="SonoSite", model="X-Porte", sop=US_IMAGE)
    frames = echo_frames(1, _banner(p), p.family.upper()[:6], seed=4)
    _jpeg_baseline(ds, frames)
    del ds.NumberOfFrames, ds.FrameIncrementPointer, ds.FrameTime
    ds.SequenceOfUltrasoundRegions = Sequence([_region(REGION_2D, 1, 1, 3, 3, 0.051, 0.051)])
    _add_private(ds, 0x0011, "SONOSITE", {0x01: ("LO", p.dicom_name), 0x02: ("LO", "Cardiac")})
    return _finish("SonoSite", ds, d / "sonosite_xporte_still.dcm", frames)


def hitachi_aloka(d: Path, *, big_endian: bool = False) -> VendorFile:
    """Hitachi Aloka ProSound F75: 16-bit MONOCHROME2, ALOKA privates; optionally Explicit VR Big Endian."""
    p = PEOPLE["Hitachi"]
    ds = base_dataset(p, manufacturer="Hitachi Aloka Medical,Ltd.", model="ProSound F75")
    frames = echo_frames(4, _banner(p), p.family.upper()[:6], seed=5)
    _set_pixels(ds, frames, photometric="MONOCHROME2")
    grey16 = frames[..., 0].astype(np.uint16) * 16  # 12 bits stored
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = grey16.astype(">u2" if big_endian else "<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.SequenceOfUltrasoundRegions = Sequence([_region(REGION_2D, 1, 1, 3, 3, 0.0244, 0.0244)])
    _add_private(ds, 0x0009, "ALOKA:Hitachi Aloka Medical", {0x01: ("LO", p.dicom_name), 0x04: ("LO", "CARDIO")})
    name = "hitachi_aloka_f75_16bit_big_endian.dcm" if big_endian else "hitachi_aloka_f75_16bit.dcm"
    return _finish("Hitachi", ds, d / name, frames, ts=ExplicitVRBigEndian if big_endian else ExplicitVRLittleEndian)


def samsung_hs70(d: Path) -> VendorFile:
    """Samsung Medison HS70A: RGB cine, RLE Lossless, SAMSUNG MEDISON privates."""
    p = PEOPLE["Samsung"]
    ds = base_dataset(p, manufacturer="SAMSUNG MEDISON CO., LTD.", model="HS70A")
    frames = echo_frames(5, _banner(p), p.family.upper()[:6], seed=6)
    _set_pixels(ds, frames)
    ds.SequenceOfUltrasoundRegions = Sequence([_region(REGION_2D, 1, 1, 3, 3, 0.0301, 0.0301)])
    _add_private(ds, 0x0033, "SAMSUNG MEDISON US", {0x01: ("LO", p.dicom_name), 0x02: ("SH", p.patient_id)})
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(RLELossless, encoding_plugin="pydicom")
    return _finish("Samsung", ds, d / "samsung_hs70a_rle.dcm", frames)


def esaote_mylab(d: Path) -> VendorFile:
    """Esaote MyLab Seven: PALETTE COLOR 8-bit with 256-entry 16-bit LUTs, ESAOTE privates with a sequence."""
    p = PEOPLE["Esaote"]
    ds = base_dataset(p, manufacturer="ESAOTE", model="MyLab Seven")
    frames = echo_frames(4, _banner(p), p.family.upper()[:6], seed=7)
    _set_pixels(ds, frames, photometric="PALETTE COLOR")
    ramp = (np.arange(256, dtype=np.uint16) * 257)
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", ramp.tobytes())
    ds.SequenceOfUltrasoundRegions = Sequence([_region(REGION_2D, 1, 1, 3, 3, 0.0275, 0.0275)])
    item = Dataset()
    item.add_new(0x00290010, "LO", "ESAOTE_US")
    item.add_new(0x00291001, "LO", p.dicom_name)
    _add_private(ds, 0x0029, "ESAOTE_US", {0x01: ("LO", p.dicom_name), 0x10: ("SQ", Sequence([item]))})
    return _finish("Esaote", ds, d / "esaote_mylab_palette.dcm", frames)


def philips_epiq_jpegls(d: Path) -> VendorFile:
    """Philips EPIQ 7C: MONOCHROME2 cine, JPEG-LS Lossless, Philips private groups."""
    p = PEOPLE["Philips"]
    ds = base_dataset(p, manufacturer="Philips Medical Systems", model="EPIQ 7C")
    frames = echo_frames(4, _banner(p), p.family.upper()[:6], seed=8)
    _set_pixels(ds, frames, photometric="MONOCHROME2")
    ds.SequenceOfUltrasoundRegions = Sequence([_region(REGION_2D, 1, 1, 3, 3, 0.0333, 0.0333)])
    _add_private(ds, 0x200D, "Philips US Imaging DD 017", {0x01: ("LO", p.dicom_name), 0x05: ("LO", "OB_GENERAL")})
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(JPEGLSLossless)
    return _finish("Philips", ds, d / "philips_epiq_jpegls.dcm", frames)


def philips_epiq_j2k_no_region(d: Path) -> VendorFile:
    """Philips EPIQ 7C exported without regions: RGB, JPEG 2000 Lossless."""
    p = PEOPLE["Philips"]
    ds = base_dataset(p, manufacturer="Philips Medical Systems", model="EPIQ 7C")
    frames = echo_frames(6, _banner(p), p.family.upper()[:6], seed=9)
    _set_pixels(ds, frames)
    _add_private(ds, 0x200D, "Philips US Imaging DD 017", {0x01: ("LO", p.dicom_name)})
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(JPEG2000Lossless)
    vf = _finish("Philips", ds, d / "philips_epiq_j2k_no_region.dcm", frames, calibrated=False)
    return vf


VENDORS: list[Callable[[Path], VendorFile]] = [
    ge_vivid, siemens_sc2000, canon_aplio, sonosite_xporte, hitachi_aloka,
    lambda d: hitachi_aloka(d, big_endian=True), samsung_hs70, esaote_mylab, philips_epiq_jpegls,
    philips_epiq_j2k_no_region,
]


def real_ultrasound_files() -> list[Path]:
    """Every ultrasound DICOM that the installed public test-data packages carry (pydicom's own
    and pydicom-data, when installed): SOP class ultrasound, or Modality US.  Never downloads."""
    from pydicom.data import data_manager

    candidates = set((Path(data_manager.DATA_ROOT) / "test_files").rglob("*"))
    for source in data_manager.external_data_sources().values():  # pydicom-data, installed: no download
        candidates.update(Path(p) for p in source.get_paths("**/*", 0))
    out = []
    for p in sorted(candidates):
        if not p.is_file():
            continue
        if p.suffix.lower() not in ("", ".dcm"):
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
        except Exception:  # noqa: BLE001 - not every test file is DICOM
            continue
        sop = str(ds.get("SOPClassUID", ""))
        if (sop in US_SOP_CLASSES or str(ds.get("Modality", "")).upper() == "US"):
            out.append(p)
    return out
