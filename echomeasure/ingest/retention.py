"""The retention allow-list: the only attributes a de-identified object may keep.

Everything that is not listed here is removed: unlisted standard attributes, retired ones,
private attributes, curves, overlays and every sequence that is not listed (with whatever it
holds, pixel data included).  Listed attributes still go through their Annex E action
(:mod:`echomeasure.ingest.profile`): Patient's Name is listed so the object stays valid, and
Annex E empties it.  Each entry carries a one-line reason; ``TABLE_VERSION`` is recorded in
every de-identification record, so a change of this table is visible in the data.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

from pydicom.dataset import Dataset

TABLE_VERSION = "echomeasure-retention-2026.12-2"

#: Items of coded-concept sequences (view, anatomy, de-identification method).
CODE_ITEM: dict[str, str] = {
    "CodeValue": "the code of a coded concept",
    "CodingSchemeDesignator": "which coding scheme the code belongs to",
    "CodingSchemeVersion": "the coding scheme's version",
    "CodeMeaning": "the code's display text (a fixed vocabulary)",
    "LongCodeValue": "a code longer than 16 characters",
    "URNCodeValue": "a code given as a URN",
}

#: Items of the Sequence of Ultrasound Regions (0018,6011): the calibration.
ULTRASOUND_REGION_ITEM: dict[str, str] = {
    "RegionSpatialFormat": "2D / M-mode / spectral / waveform: how a region is measured",
    "RegionDataType": "tissue, colour flow, PW/CW Doppler, ECG: which measurements apply",
    "RegionFlags": "Doppler scale type (velocity or frequency) and region priority",
    "RegionLocationMinX0": "region rectangle, left column",
    "RegionLocationMinY0": "region rectangle, top row",
    "RegionLocationMaxX1": "region rectangle, right column (inclusive)",
    "RegionLocationMaxY1": "region rectangle, bottom row (inclusive)",
    "ReferencePixelX0": "reference pixel column (Doppler time origin)",
    "ReferencePixelY0": "reference pixel row (Doppler baseline)",
    "PhysicalUnitsXDirection": "unit of one horizontal pixel step (cm, s)",
    "PhysicalUnitsYDirection": "unit of one vertical pixel step (cm, cm/s)",
    "ReferencePixelPhysicalValueX": "physical value at the reference column",
    "ReferencePixelPhysicalValueY": "physical value at the reference row (velocity at the baseline)",
    "PhysicalDeltaX": "size of one horizontal pixel step: the calibration",
    "PhysicalDeltaY": "size of one vertical pixel step: the calibration",
    "TransducerFrequency": "acquisition frequency (kHz), technical",
    "PulseRepetitionFrequency": "Doppler PRF (Hz), technical",
    "DopplerCorrectionAngle": "angle correction applied to Doppler velocities",
    "SteeringAngle": "beam steering angle, technical",
    "DopplerSampleVolumeXPosition": "sample-volume column of a Doppler region",
    "DopplerSampleVolumeYPosition": "sample-volume row of a Doppler region",
    "TMLinePositionX0": "M-mode line start column",
    "TMLinePositionY0": "M-mode line start row",
    "TMLinePositionX1": "M-mode line end column",
    "TMLinePositionY1": "M-mode line end row",
    "PixelComponentOrganization": "how pixel values map to physical values",
    "PixelComponentMask": "pixel component bit mask",
    "PixelComponentRangeStart": "pixel component range start",
    "PixelComponentRangeStop": "pixel component range stop",
    "PixelComponentPhysicalUnits": "unit of the pixel component",
    "PixelComponentDataType": "data type of the pixel component",
    "NumberOfTableBreakPoints": "pixel-value mapping table size",
    "TableOfXBreakPoints": "pixel-value mapping table",
    "TableOfYBreakPoints": "pixel-value mapping table",
    "NumberOfTableEntries": "pixel-value mapping table size",
    "TableOfPixelValues": "pixel-value mapping table",
    "TableOfParameterValues": "pixel-value mapping table",
}

#: Top-level attributes.  Annex E actions apply on top (Z empties, U remaps, C shifts dates).
TOP_LEVEL: dict[str, str] = {
    # SOP common
    "SpecificCharacterSet": "how kept text is encoded",
    "SOPClassUID": "what the object is; readers dispatch on it (registered UID)",
    "SOPInstanceUID": "the object's identity; Annex E remaps it (HMAC)",
    "InstanceNumber": "order of the images of a series",
    # patient module (type 2: present, emptied or pseudonymised by Annex E)
    "PatientName": "type 2 attribute; Annex E empties it",
    "PatientID": "keyed pseudonym keeps one patient's studies together",
    "PatientBirthDate": "type 2 attribute; Annex E empties it",
    "PatientSex": "type 2 attribute; Annex E empties it (kept with the patient-characteristics option)",
    "PatientAge": "removed by Annex E unless patient characteristics are retained",
    "PatientSize": "removed by Annex E unless patient characteristics are retained (BSA indexing)",
    "PatientWeight": "removed by Annex E unless patient characteristics are retained (BSA indexing)",
    # study / series
    "StudyInstanceUID": "groups the clips of one study; Annex E remaps it",
    "StudyDate": "study date, shifted per patient (or removed)",
    "StudyTime": "study time of day, kept with shifted dates",
    "StudyID": "type 2 attribute; Annex E empties it",
    "AccessionNumber": "type 2 attribute; Annex E empties it",
    "ReferringPhysicianName": "type 2 attribute; Annex E empties it",
    "Modality": "US: the reader refuses other modalities",
    "SeriesInstanceUID": "groups the clips of one series; Annex E remaps it",
    "SeriesNumber": "order of the series of a study",
    "SeriesDate": "series date, shifted per patient (or removed)",
    "SeriesTime": "series time of day",
    # equipment
    "Manufacturer": "equipment make: calibration conventions differ between vendors",
    "ManufacturerModelName": "equipment model: needed to judge generalisation across scanners",
    # image
    "ImageType": "2D / M-mode / Doppler flags of the image",
    "ContentDate": "image date, shifted per patient (or removed)",
    "ContentTime": "image time of day",
    "AcquisitionDate": "acquisition date, shifted per patient (or removed)",
    "AcquisitionTime": "acquisition time of day",
    "AcquisitionDateTime": "acquisition date and time, shifted per patient (or removed)",
    "LossyImageCompression": "whether the pixels were ever lossy-compressed (measurement quality)",
    "LossyImageCompressionRatio": "how strongly the pixels were compressed",
    "LossyImageCompressionMethod": "which lossy method was used",
    "BurnedInAnnotation": "set from what the pixel cleaning did",
    "PixelAspectRatio": "non-square pixels change distances",
    # pixel module (rewritten for the 8-bit RGB output)
    "SamplesPerPixel": "pixel module",
    "PhotometricInterpretation": "pixel module",
    "PlanarConfiguration": "pixel module",
    "Rows": "pixel module",
    "Columns": "pixel module",
    "BitsAllocated": "pixel module",
    "BitsStored": "pixel module",
    "HighBit": "pixel module",
    "PixelRepresentation": "pixel module",
    "PixelData": "the cleaned frames",
    # cine / frame timing
    "NumberOfFrames": "multi-frame module",
    "FrameIncrementPointer": "multi-frame module: which attribute times the frames",
    "FrameTime": "time between frames: velocities, heart rate, frame choice",
    "FrameTimeVector": "per-frame times when they are not uniform",
    "CineRate": "frame rate when FrameTime is absent",
    "RecommendedDisplayFrameRate": "frame rate when FrameTime is absent",
    "ActualFrameDuration": "frame duration (ms)",
    "FrameDelay": "time of the first frame after the trigger",
    "StartTrim": "first frame to show",
    "StopTrim": "last frame to show",
    "PreferredPlaybackSequencing": "loop or sweep playback",
    "EffectiveDuration": "duration of the clip",
    "HeartRate": "beats per minute at acquisition: cycle length for ED/ES search",
    # ultrasound image module
    "UltrasoundColorDataPresent": "whether colour-flow pixels are present",
    "SequenceOfUltrasoundRegions": "the calibration: regions, units and pixel spacing",
    "StageName": "stress-echo stage (kept only in DESCRIPTOR_WORDS)",
    "StageNumber": "stress-echo stage number",
    "NumberOfStages": "stress-echo protocol size",
    "ViewName": "acquisition view label (kept only in DESCRIPTOR_WORDS)",
    "ViewNumber": "view number in a stress stage",
    "NumberOfViewsInStage": "stress-echo protocol size",
    "ViewCodeSequence": "coded acquisition view (PLAX, A4C, ...)",
    "AnatomicRegionSequence": "coded anatomy (heart)",
    # the de-identification marks (written by echomeasure)
    "PatientIdentityRemoved": "de-identification mark",
    "DeidentificationMethod": "de-identification mark",
    "DeidentificationMethodCodeSequence": "de-identification mark (CID 7050 codes)",
    "LongitudinalTemporalInformationModified": "says whether dates were shifted or removed",
}

#: Items of the listed sequences; a listed sequence's items keep only these attributes.
SEQUENCE_ITEMS: dict[str, Mapping[str, str]] = {
    "SequenceOfUltrasoundRegions": ULTRASOUND_REGION_ITEM,
    "ViewCodeSequence": {**CODE_ITEM, "ViewModifierCodeSequence": "coded view modifier"},
    "ViewModifierCodeSequence": CODE_ITEM,
    "AnatomicRegionSequence": {**CODE_ITEM, "AnatomicRegionModifierSequence": "coded anatomy modifier"},
    "AnatomicRegionModifierSequence": CODE_ITEM,
    "DeidentificationMethodCodeSequence": CODE_ITEM,
}

_EMPTY: Mapping[str, str] = {}

#: Kept attributes that operators type freely: kept only when every word is in
#: :data:`DESCRIPTOR_WORDS` (a name typed there is in no header field the gate could compare with).
FREE_TEXT_DESCRIPTORS = ("ViewName", "StageName")
#: Kept code sequences whose Code Meaning is text (local coding schemes accept anything): the
#: meaning is kept only when every word is in :data:`DESCRIPTOR_WORDS` too.
CODE_SEQUENCES = ("ViewCodeSequence", "ViewModifierCodeSequence", "AnatomicRegionSequence",
                  "AnatomicRegionModifierSequence")

#: The words of echo view and stress-stage labels.  Numbers and short codes with a digit
#: (A4C, 2CH, 10MCG) are allowed too.
_DESCRIPTOR_TEXT = """
    plax psax lax sax alax aplax a4c a2c a3c a5c 4ch 2ch 3ch 5ch ch ap4 ap2 ap3 ap5 sc subc ssn supra tee tte
    apical apex parasternal subcostal subxiphoid suprasternal sternal notch long short axis chamber chambers
    four two three five lv rv la ra av mv tv pv lvot rvot ivc svc pa aorta aortic mitral tricuspid pulmonic
    pulmonary valve valves level pap papillary muscle muscles base basal mid inflow outflow arch root ascending
    descending abdominal view views zoom zoomed focused focus modified off axis color colour flow doppler cw pw
    tdi tvi tissue velocity mmode m mode 2d 3d 4d strain contrast bubble agitated saline lateral medial septal
    septum annulus wall walls pericardial pericardium effusion cine loop clip image images frame left right
    ventricle ventricular atrium atrial heart cardiac echo echocardiogram lung pleural hepatic vein veins
    inferior superior vena cava anterior posterior inferolateral anteroseptal and with without of the at on
    in to x y z
    rest resting baseline pre post peak stress exercise low high dose recovery stage max maximal maximum
    dobutamine dobu treadmill bike bicycle supine upright pharmacologic immediate early late warm up warmup
    submax submaximal target hr mcg kg min mins minute minutes sec stop end start
    structure entire thoracic thorax chest transthoracic transesophageal esophageal body region part whole
    neck abdomen pelvis fetal fetus obstetric vascular vessel artery arteries carotid coronary sinus
"""
DESCRIPTOR_WORDS = frozenset(_DESCRIPTOR_TEXT.split())


def free_text_outside_vocabulary(ds: Dataset) -> list[tuple[Dataset, int, str]]:
    """Every kept free-text value with a word outside :data:`DESCRIPTOR_WORDS`: the descriptors of
    :data:`FREE_TEXT_DESCRIPTORS` and the Code Meanings in :data:`CODE_SEQUENCES` (nested ones
    too), as ``(dataset holding it, tag, label)``."""
    found: list[tuple[Dataset, int, str]] = []
    for keyword in FREE_TEXT_DESCRIPTORS:
        if keyword in ds and not plain_descriptor(ds[keyword].value):
            tag = ds[keyword].tag
            found.append((ds, int(tag), f"({tag.group:04X},{tag.element:04X}) {keyword}"))
    for keyword in CODE_SEQUENCES:
        for item in ds.get(keyword) or []:
            if "CodeMeaning" in item and not plain_descriptor(item.CodeMeaning):
                found.append((item, 0x00080104, f"(0008,0104) CodeMeaning in {keyword}"))
            found += free_text_outside_vocabulary(item)
    return found


def plain_descriptor(value: object) -> bool:
    """True when every word of a free-text descriptor is in :data:`DESCRIPTOR_WORDS`, a number,
    or a short code with a digit (``A4C``, ``2CH``); case, width and punctuation are ignored."""
    if value is None:
        return True
    values = [value] if isinstance(value, str) or not isinstance(value, Iterable) else list(value)
    text = unicodedata.normalize("NFKC", " ".join(str(v) for v in values)).casefold()
    return all(
        word in DESCRIPTOR_WORDS or word.isdigit() or (len(word) <= 5 and any(c.isdigit() for c in word))
        for word in re.findall(r"[^\W_]+", text)
    )


def items_table(sequence_keyword: str) -> Mapping[str, str]:
    """What the items of a listed sequence may keep (empty for an unknown sequence)."""
    return SEQUENCE_ITEMS.get(sequence_keyword, _EMPTY)


def as_record() -> dict:
    """The table in JSON form (version, attribute -> reason), e.g. for documentation."""
    return {"version": TABLE_VERSION, "top_level": dict(TOP_LEVEL),
            "sequence_items": {k: dict(v) for k, v in SEQUENCE_ITEMS.items()}}
