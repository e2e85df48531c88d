"""What a de-identified file still says: every text value the de-identifier did not write itself."""

from __future__ import annotations

from pathlib import Path

import pydicom

# Output values written by the de-identifier from a fixed vocabulary (never an original value).
WRITER_SET = {"PatientIdentityRemoved", "LongitudinalTemporalInformationModified", "BurnedInAnnotation",
              "PhotometricInterpretation", "SpecificCharacterSet", "DeidentificationMethod",
              "DeidentificationMethodCodeSequence", "PatientID"}


def kept_text(path: Path) -> str:
    """Every text value of a de-identified file (nested items, file meta), writer-set ones excluded."""
    ds = pydicom.dcmread(path)
    parts: list[str] = []

    def visit(d) -> None:
        for elem in d:
            if elem.keyword in WRITER_SET or elem.tag == 0x7FE00010:
                continue
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif isinstance(elem.value, (str, pydicom.valuerep.PersonName, pydicom.multival.MultiValue, list)):
                vals = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]
                parts.extend(str(v) for v in vals)

    visit(ds)
    visit(ds.file_meta)
    return "\n".join(parts)
