"""The de-identification gate: an independent re-check of every output, and the only maker of
:class:`DeidentifiedClip`.

The gate does not trust the de-identifier.  Before de-identification it collects, from the
*original*, the values that identify someone (:func:`collect_dicom_identifiers`,
:func:`collect_container_identifiers`); afterwards it re-reads the output *bytes* and refuses
them if any of these remain:

* DICOM: a non-zero 128-byte preamble; any private attribute or attribute outside the retention
  table (:mod:`echomeasure.ingest.retention`), nested sequences included; any original
  identifier in a kept value or in the header bytes; a missing PatientIdentityRemoved=YES /
  CID 7050 basic code;
* videos and stills: any metadata key other than what muxers write themselves; any original
  metadata value in the parsed metadata, or (length >= 6) anywhere in the file bytes.

Identifiers come only from identifying attributes: person names (PN, anywhere), IDs, addresses,
institutions, stations and free text (Annex E rows that do not keep the value, and LT/ST/UT),
dates and non-registered UIDs.  Coded values (CS), numbers, code meanings and private values
are technical, not identifiers.  Matching is done the way a person reads: NFKC, case-folded,
accents ignored; a name matches by any of its family/given/middle components in any order
and with any separator; short tokens only as whole words, longer ones also inside words.

Short all-digit IDs (fewer than :data:`SHORT_NUMERIC_ID_DIGITS` digits) are replaced where they
stand (Patient ID becomes a pseudonym) but are not searched elsewhere: ``100`` is also the
character set ISO_IR 100, ``0001`` an image-type code and ``120`` a heart rate, and a number
with fewer than 100000 possible values identifies nobody without a name; hospital record numbers
are six digits or longer.  Longer all-digit IDs, dates and UIDs match as whole numbers only.

:func:`matching_attributes` is what the de-identifier uses to *drop* a kept value that carries
an identifier (``Manufacturer "Philips"`` for a patient named Philips) before the gate runs:
such a value is removed and recorded, and the object is admitted; the gate refuses only what
was not cleaned.

Only :func:`admit_dicom` / :func:`admit_frames` construct a :class:`DeidentifiedClip`; its
constructor refuses any caller that does not hold this module's private token.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from echomeasure.errors import DeidentificationError
from echomeasure.ingest import retention
from echomeasure.ingest.clip import Clip
from echomeasure.ingest.profile import annex_e, row_for

_GATE_TOKEN = object()

#: All-digit IDs shorter than this are not searched outside their own attribute (see above).
SHORT_NUMERIC_ID_DIGITS = 6
#: Name tokens at least this long also match inside a longer word ("PhilipsMedical").
LONG_NAME_TOKEN = 5
#: Other identifiers at least this long (letters and digits, separators ignored) also match
#: inside a longer run.
LONG_TERM = 8
#: Identifiers searched in the raw header bytes (binary fields too) need at least this length.
MIN_BYTE_SEARCH_LEN = 6
MIN_BYTE_SEARCH_LEN_CONTAINER = 6
MIN_IDENTIFIER_LEN = 2
_REGISTERED_ROOT = "1.2.840.10008."
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
# Text VRs whose values can carry an identity when the attribute is an identifying one.
_IDENTIFYING_VRS = frozenset({"AE", "LO", "SH", "ST", "LT", "UT", "UC", "UR"})
_FREE_TEXT_VRS = frozenset({"LT", "ST", "UT"})
# Identifying attributes that the Annex E table does not list.
_UNLISTED_IDENTIFYING = frozenset({
    "ContactDisplayName", "ContactURI", "DeviceID", "DeviceLabel", "DeviceDescription", "ManufacturerDeviceIdentifier",
    "UDISequence", "UniqueDeviceIdentifier", "DeviceSerialNumber", "StationAETitle",
})
# Person-name components that are not identifying (prefix / suffix groups are skipped anyway).
_NAME_STOPWORDS = frozenset({"dr", "mr", "mrs", "ms", "jr", "sr", "md", "phd", "iii", "ii"})
# Elements whose values describe software, not people.
_NOT_IDENTIFYING_META = {0x00020012, 0x00020013, 0x00020010, 0x00020002, 0x00020001}
# Output attributes the de-identifier writes from a fixed vocabulary; the gate validates them
# and does not search them (a patient named "Yes" is not found in PatientIdentityRemoved).
_WRITER_VOCABULARY: dict[str, frozenset[str]] = {
    "PatientIdentityRemoved": frozenset({"YES"}),
    "LongitudinalTemporalInformationModified": frozenset({"MODIFIED", "REMOVED", "UNMODIFIED"}),
    "BurnedInAnnotation": frozenset({"YES", "NO"}),
    "PhotometricInterpretation": frozenset({"RGB"}),
    "SpecificCharacterSet": frozenset({"ISO_IR 192"}),
}


# Letters that carry no combining accent to strip (ø, ł, ...) and Cyrillic/Greek letters drawn
# like Latin ones: folded the same way on both sides, so "SOREN" matches Søren and a name
# typed with a Cyrillic "е" still matches.
_LETTER_FOLD = str.maketrans({
    "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "æ": "ae", "œ": "oe", "ı": "i", "ħ": "h", "ŧ": "t",
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "ο": "o", "ι": "i", "κ": "k", "ν": "v",
})
# How names with umlauts are also written in plain letters (Müller = MUELLER, Søren = SOEREN);
# added as extra identifier tokens, since stripping the accent gives the other spelling (MULLER).
_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ø": "oe", "å": "aa"})


def normalise(text: str) -> str:
    """NFKC, case-folded, accents removed, look-alike letters folded (:data:`_LETTER_FOLD`)."""
    t = unicodedata.normalize("NFKC", text).casefold()
    if not t.isascii():
        t = t.translate(_LETTER_FOLD)
        t = "".join(ch for ch in unicodedata.normalize("NFKD", t) if not unicodedata.combining(ch))
    return t


def _spellings(text: str) -> list[str]:
    """``text`` and, when it has umlauts, its transliteration (Müller -> Mueller)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    translit = folded.translate(_TRANSLITERATION)
    return [text, translit] if translit != folded else [text]


def _unspaced_script(tok: str) -> bool:
    """True for words of scripts written without spaces between names (Chinese, Japanese, Korean,
    Thai): there a name is found inside a longer run of characters, whatever its length."""
    return any(
        0x2E80 <= (o := ord(ch)) <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF
        or 0x0E00 <= o <= 0x0E7F or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F
        for ch in tok
    )


def tokens(text: str) -> list[str]:
    """The words of ``text`` after :func:`normalise` (letters and digits; everything else separates)."""
    return re.findall(r"[^\W_]+", normalise(text))


@dataclass
class OriginalIdentifiers:
    """What the gate must not find again: ``{normalised value: label}`` maps.

    Labels name the attribute only (``(0010,0010) PatientName``), never a value.
    """

    names: dict[str, str] = field(default_factory=dict)  # name tokens
    terms: dict[str, str] = field(default_factory=dict)  # IDs, addresses, free text: token strings
    numbers: dict[str, str] = field(default_factory=dict)  # all-digit IDs of SHORT_NUMERIC_ID_DIGITS+
    uids: dict[str, str] = field(default_factory=dict)
    dates: dict[str, str] = field(default_factory=dict)
    short_numeric_ids: int = 0  # replaced where they stand, not searched elsewhere

    def __len__(self) -> int:
        return len(self.names) + len(self.terms) + len(self.numbers) + len(self.uids) + len(self.dates)

    # ------------------------------------------------------------------ collecting

    def add_name(self, value: str, label: str) -> None:
        """A person name: family, given and middle components (any separator) as tokens, in
        every spelling (:func:`_spellings`), and family and given name written as one word
        (李小龙, NGLI), either way round."""
        for group in str(value).split("="):
            for spelling in _spellings(group):
                parts = [tokens(component) for component in spelling.split("^")[:3]]
                for tok in (t for part in parts for t in part):
                    self._add_token(tok, label)
                if len(parts) >= 2 and parts[0] and parts[1]:
                    family, given = "".join(parts[0]), "".join(parts[1])
                    self._add_token(family + given, label)
                    self._add_token(given + family, label)

    def _add_token(self, tok: str, label: str) -> None:
        if tok.isdigit():
            if len(tok) < SHORT_NUMERIC_ID_DIGITS:
                self.short_numeric_ids += 1
            else:
                self.numbers.setdefault(tok, label)
            return
        if (len(tok) >= MIN_IDENTIFIER_LEN or _unspaced_script(tok)) and tok not in _NAME_STOPWORDS:
            self.names.setdefault(tok, label)

    def add_term(self, value: str, label: str) -> None:
        """An ID, address, institution or free text: matched as a whole (words in order), in
        every spelling (:func:`_spellings`)."""
        for spelling in _spellings(str(value).strip("\x00")):
            self._add_term_tokens(tokens(spelling), label)

    def _add_term_tokens(self, toks: list[str], label: str) -> None:
        if not toks:
            return
        if len(toks) == 1 and toks[0].isdigit():
            if len(toks[0]) < SHORT_NUMERIC_ID_DIGITS:
                self.short_numeric_ids += 1
            else:
                self.numbers.setdefault(toks[0], label)
            return
        term = " ".join(toks)
        if len(term.replace(" ", "")) >= MIN_IDENTIFIER_LEN:
            self.terms.setdefault(term, label)

    # ------------------------------------------------------------------ matching

    def find(self, value: str, *, uid_valued: bool = False) -> list[str]:
        """Labels of the identifiers that occur in one kept value (empty: clean)."""
        text = unicodedata.normalize("NFKC", str(value))
        hits: list[str] = []
        for table in (self.uids, self.dates, self.numbers):
            for number, label in table.items():
                if number in text and re.search(r"(?<![0-9.])" + re.escape(number) + r"(?![0-9])", text):
                    hits.append(label)
        if uid_valued:
            return hits
        toks = tokens(text)
        if not toks:
            return hits
        padded = " " + " ".join(toks) + " "
        compact = "".join(toks)
        for tok, label in self.names.items():
            if f" {tok} " in padded or ((len(tok) >= LONG_NAME_TOKEN or _unspaced_script(tok)) and tok in compact):
                hits.append(label)
        for term, label in self.terms.items():
            whole = term.replace(" ", "")
            if f" {term} " in padded or (len(whole) >= LONG_TERM and not whole.isdigit() and whole in compact):
                hits.append(label)
        return hits

    def byte_needles(self, min_len: int) -> list[tuple[bytes, str, bool]]:
        """(lower-case needle, label, whole-number) for searching raw bytes."""
        out: list[tuple[bytes, str, bool]] = []
        for table, numeric in ((self.names, False), (self.terms, False), (self.numbers, True),
                               (self.uids, True), (self.dates, True)):
            for value, label in table.items():
                if len(value) < min_len:
                    continue
                for enc in ("utf-8", "latin-1"):
                    try:
                        b = value.encode(enc)
                    except UnicodeEncodeError:
                        continue
                    out.append((b, label, numeric))
        return out


def _label(elem: pydicom.dataelem.DataElement) -> str:
    kw = elem.keyword or ("private" if elem.tag.is_private else "element")
    return f"({elem.tag.group:04X},{elem.tag.element:04X}) {kw}"


def _printable_runs(data: bytes, min_len: int = 6) -> list[str]:
    return [m.decode("latin-1") for m in re.findall(rb"[\x20-\x7e]{%d,}" % min_len, data)]


def _values(elem: pydicom.dataelem.DataElement) -> list:
    v = elem.value
    if v is None:
        return []
    if isinstance(v, (list, tuple, pydicom.multival.MultiValue)):
        return list(v)
    return [v]


def _is_identifying(elem: pydicom.dataelem.DataElement) -> bool:
    """An attribute whose text identifies someone: Annex E does not keep it, free text, or a
    known unlisted identifying attribute.  Coded strings and numbers are technical."""
    if elem.VR not in _IDENTIFYING_VRS:
        return False
    if elem.keyword in _UNLISTED_IDENTIFYING:
        return True
    row = row_for(int(elem.tag))
    if row is not None:
        return row["basic"] != "K"
    return elem.VR in _FREE_TEXT_VRS


def collect_dicom_identifiers(ds: Dataset, *, secret: bytes | None = None) -> OriginalIdentifiers:
    """Collect identifying values from an original dataset (all levels, file meta included).

    With ``secret``, values that verifiably came from a previous echomeasure de-identification
    under the same secret are not identifiers: UIDs whose embedded MAC verifies, a verified
    Patient ID pseudonym, and the (already shifted) dates of a verified de-identified object.
    This is what makes re-de-identifying an output possible (idempotence).
    """
    from echomeasure.ingest.deid import UidRemapper, _is_pseudonym, already_deidentified

    ids = OriginalIdentifiers()
    annex_e()  # fail early if the table is missing
    remap = UidRemapper(secret) if secret else None
    prior = bool(secret) and already_deidentified(ds, secret)  # type: ignore[arg-type]

    def visit(d: Dataset) -> None:
        for elem in d:
            tag = int(elem.tag)
            if tag in _NOT_IDENTIFYING_META or tag == 0x7FE00010:
                continue
            vr = elem.VR
            if vr == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            label = _label(elem)
            if vr == "PN":
                for v in _values(elem):
                    ids.add_name(str(v), label)
                continue
            if vr == "UI":
                for u in _values(elem):
                    u = str(u).strip().rstrip("\x00")
                    if u and not u.startswith(_REGISTERED_ROOT) and not (remap and remap.is_remapped(u)):
                        ids.uids.setdefault(u, label)
                continue
            if vr in ("DA", "DT"):
                if prior:
                    continue
                for v in _values(elem):
                    s = str(v).strip()
                    if len(s) >= 8 and s[:8].isdigit() and s[:8] != "19000101":
                        ids.dates.setdefault(s[:8], label)
                continue
            if elem.tag.is_private or not _is_identifying(elem):
                continue
            if tag == 0x00100020 and secret and _is_pseudonym(secret, str(elem.value or "")):
                continue
            for v in _values(elem):
                if isinstance(v, str) and v.strip():
                    ids.add_term(v, label)

    visit(ds)
    if hasattr(ds, "file_meta"):
        visit(ds.file_meta)
    return ids


def collect_container_identifiers(metadata: dict[str, str]) -> OriginalIdentifiers:
    """Identifying values of a video/image container: every non-technical metadata value."""
    from echomeasure.ingest.video_io import TECHNICAL_METADATA_KEYS

    ids = OriginalIdentifiers()
    for scoped_key, value in metadata.items():
        key = scoped_key.split(":", 1)[-1].lower()
        if key in TECHNICAL_METADATA_KEYS:
            continue
        label = f"metadata {scoped_key}"
        ids.add_term(value, label)
        if "^" in value:
            ids.add_name(value, label)
        if key in ("creation_time", "date"):
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 8:
                ids.dates.setdefault(digits[:8], label)
    return ids


# --------------------------------------------------------------------------- searching


def _writer_value(ds: Dataset, elem: pydicom.dataelem.DataElement, secret_check) -> bool:
    """True for a value the de-identifier wrote from a fixed vocabulary (not searched)."""
    allowed = _WRITER_VOCABULARY.get(elem.keyword)
    if allowed is not None:
        return all(str(v).strip().upper() in allowed for v in _values(elem))
    if elem.keyword == "DeidentificationMethod":
        from echomeasure.ingest.deid import METHOD_MARKER

        return str(elem.value or "").startswith(METHOD_MARKER)
    if elem.keyword == "PatientID":
        return secret_check is not None and secret_check(str(elem.value or ""))
    return False


def matching_attributes(ds: Dataset, ids: OriginalIdentifiers, *, secret: bytes | None = None,
                        include_meta: bool = True) -> list[tuple[Dataset, int, str, str]]:
    """Every kept value (nested items included) that carries an original identifier.

    Returns ``(dataset holding it, tag, attribute label, label of the identifier's source)``;
    pixel data and the de-identification marks are not searched.
    """
    from echomeasure.ingest.deid import CID_7050, _is_pseudonym

    pseudonym = (lambda v: _is_pseudonym(secret, v)) if secret else None
    found: list[tuple[Dataset, int, str, str]] = []

    def visit(d: Dataset, in_deid_codes: bool) -> None:
        for elem in d:
            if elem.tag == 0x7FE00010:
                continue
            if elem.VR == "SQ":
                codes = elem.keyword == "DeidentificationMethodCodeSequence"
                for item in elem.value or []:
                    if codes and CID_7050.get(str(item.get("CodeValue", ""))) == str(item.get("CodeMeaning", "")) \
                            and str(item.get("CodingSchemeDesignator", "")) == "DCM":
                        continue
                    visit(item, codes)
                continue
            if _writer_value(d, elem, pseudonym):
                continue
            if elem.VR in _TEXT_VRS:
                values = [str(v) for v in _values(elem)]
            elif isinstance(elem.value, bytes):
                values = _printable_runs(elem.value, 3)
            else:
                continue
            for v in values:
                hits = ids.find(v, uid_valued=elem.VR == "UI")
                if hits:
                    found.append((d, int(elem.tag), _label(elem), hits[0]))
                    break

    visit(ds, False)
    if include_meta and hasattr(ds, "file_meta"):
        visit(ds.file_meta, False)
    return found


def _find_byte_leaks(ids: OriginalIdentifiers, haystack: bytes, *, min_len: int) -> list[str]:
    """Labels of identifiers found in raw bytes (case-insensitive; numbers as whole numbers)."""
    low = haystack.lower()
    leaks: list[str] = []
    for needle, label, numeric in ids.byte_needles(min_len):
        if needle not in low:
            continue
        if numeric and not re.search(rb"(?<![0-9.])" + re.escape(needle) + rb"(?![0-9])", low):
            continue
        leaks.append(label)
    return leaks


def _mask_marks(ds: Dataset, header: bytes) -> bytes:
    """Blank the de-identification marks the gate has validated, so their fixed wording
    ("Basic Application Confidentiality Profile", ...) cannot collide with an original value."""
    from echomeasure.ingest.deid import CID_7050, METHOD_MARKER

    texts: list[str] = []
    method = str(ds.get("DeidentificationMethod", ""))
    if method.startswith(METHOD_MARKER):
        texts.append(method)
    for item in ds.get("DeidentificationMethodCodeSequence", []):
        code, meaning = str(item.get("CodeValue", "")), str(item.get("CodeMeaning", ""))
        if CID_7050.get(code) == meaning:
            texts.append(meaning)
    version = str(ds.file_meta.get("ImplementationVersionName", ""))
    if version.startswith("ECHOMEASURE"):
        texts.append(version)
    for kw, vocabulary in _WRITER_VOCABULARY.items():
        if str(ds.get(kw, "")).strip().upper() in vocabulary:
            texts.append(str(ds.get(kw)).strip())
    for t in texts:
        b = t.encode("ascii", "ignore")
        if b:
            header = header.replace(b, b" " * len(b))
    return header


def _outside_retention(ds: Dataset) -> str | None:
    """The first attribute (label) that the retention table does not list, or None."""

    def walk(d: Dataset, allowed) -> str | None:
        for elem in d:
            if elem.keyword not in allowed:
                return _label(elem)
            if elem.VR == "SQ":
                items = retention.items_table(elem.keyword)
                for item in elem.value or []:
                    bad = walk(item, items)
                    if bad:
                        return bad
        return None

    return walk(ds, retention.TOP_LEVEL)


# --------------------------------------------------------------------------- DICOM checks


@dataclass(frozen=True)
class GateReport:
    """What the gate checked on one output (all passed, or the output was refused)."""

    checks: tuple[str, ...]
    identifiers_checked: int

    def as_dict(self) -> dict:
        return {"passed": True, "checks": list(self.checks), "identifiers_checked": self.identifiers_checked}


def _refuse(reason: str) -> DeidentificationError:
    return DeidentificationError(f"de-identification gate refused the output: {reason}; nothing was written")


def _parse_header(data: bytes | memoryview) -> tuple[Dataset, int]:
    """Parse everything before the pixel data; return the dataset and where parsing stopped.

    Only the header is copied: growing prefixes are tried until the parse stops before the
    end of the prefix (at the pixel data) or the prefix is the whole file.
    """
    limit = 1 << 16
    while True:
        chunk = bytes(data[:limit])
        fp = BytesIO(chunk)
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
            start = fp.tell()
        except Exception as exc:  # noqa: BLE001 - any parse failure is a refusal (or a short prefix)
            if limit < len(data):
                limit *= 8
                continue
            raise _refuse(f"the output cannot be parsed ({type(exc).__name__})") from None
        if start < len(chunk) or limit >= len(data):
            return ds, start
        limit *= 8


def check_dicom_bytes(original: OriginalIdentifiers, data: bytes | memoryview, *, secret: bytes | None = None
                      ) -> tuple[GateReport, Dataset, tuple[int, int] | None]:
    """Re-read a de-identified DICOM from its bytes and refuse it if anything identifying remains.

    Returns the report, the parsed dataset (pixel value deferred) and the (offset, length) of
    the native pixel data value in ``data`` (None when absent).  Raises
    :class:`DeidentificationError` on any failed check.
    """
    if len(data) < 132 or bytes(data[128:132]) != b"DICM":
        raise _refuse("the output is not a DICOM file with a preamble")
    if any(bytes(data[:128])):
        raise _refuse("the 128-byte preamble is not zeroed")
    ds, start = _parse_header(data)
    pixel_span = None
    if start < len(data):
        if bytes(data[start : start + 4]) != b"\xe0\x7f\x10\x00" or bytes(data[start + 4 : start + 6]) not in (b"OB", b"OW"):
            raise _refuse("unexpected data where the pixel data should start")
        length = int.from_bytes(bytes(data[start + 8 : start + 12]), "little")
        if length == 0xFFFFFFFF or start + 12 + length != len(data):
            raise _refuse("the pixel data is not native or is followed by further elements")
        pixel_span = (start + 12, length)

    def walk(d: Dataset) -> None:
        for tag in list(d.keys()):
            if tag.is_private:
                raise _refuse(f"private attribute ({tag.group:04X},{tag.element:04X}) remains")
            if tag == 0x7FE00010:
                continue
            elem = d[tag]
            if elem.VR == "SQ":
                for item in elem.value or []:
                    walk(item)

    walk(ds)
    walk(ds.file_meta)
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        raise _refuse("PatientIdentityRemoved is not YES")
    codes = {str(it.get("CodeValue", "")) for it in ds.get("DeidentificationMethodCodeSequence", [])}
    if "113100" not in codes:
        raise _refuse("the CID 7050 basic profile code 113100 is missing")
    header = bytes(data if pixel_span is None else data[: pixel_span[0]])
    # Parsed values at every level: every identifier; raw bytes outside the pixel data: the
    # longer ones (short values collide with binary fields by chance).
    leaks = [source for _, _, _, source in matching_attributes(ds, original, secret=secret)]
    leaks += _find_byte_leaks(original, _mask_marks(ds, header), min_len=MIN_BYTE_SEARCH_LEN)
    if leaks:
        raise _refuse(f"original identifying values remain ({', '.join(sorted(set(leaks))[:5])})")
    unlisted = _outside_retention(ds)
    if unlisted:
        raise _refuse(f"attribute {unlisted} is not on the retention list")
    free_text = retention.free_text_outside_vocabulary(ds)
    if free_text:
        raise _refuse(f"attribute {free_text[0][2]} holds free text outside the view and stage words")
    return (
        GateReport(
            checks=("preamble zeroed", "no private attributes", "PatientIdentityRemoved=YES and CID 7050 codes",
                    "no original identifying value, UID or date outside the pixel data",
                    f"only attributes of retention table {retention.TABLE_VERSION}"),
            identifiers_checked=len(original),
        ),
        ds,
        pixel_span,
    )


def check_container_bytes(original: OriginalIdentifiers, data: bytes, kind: str) -> GateReport:
    """Refuse a de-identified video/still whose metadata or bytes still carry original values."""
    from echomeasure.ingest.video_io import TECHNICAL_METADATA_KEYS, container_metadata, image_metadata

    meta = image_metadata(data) if kind == "image" else container_metadata(data)
    extra = sorted(k for k in meta if k.split(":", 1)[-1].lower() not in TECHNICAL_METADATA_KEYS)
    if extra:
        raise _refuse(f"metadata remains ({', '.join(extra[:5])})")
    leaks = [hit for v in meta.values() for hit in original.find(v)]
    leaks += _find_byte_leaks(original, data, min_len=MIN_BYTE_SEARCH_LEN_CONTAINER)
    if leaks:
        raise _refuse(f"original identifying values remain in {', '.join(sorted(set(leaks))[:5])}")
    return GateReport(
        checks=("new container, no metadata but what the muxer writes",
                "no original metadata value in the metadata or the file bytes"),
        identifiers_checked=len(original),
    )


# --------------------------------------------------------------------------- the gated type


class DeidentifiedClip:
    """A clip whose source passed the de-identification gate.  Only the gate constructs these.

    Attributes
    ----------
    clip : Clip
        De-identified frames (read-only array) with regions and frame time.
    study_uid, series_uid, instance_uid : str
        Pseudonymous UIDs (``2.25.``); for videos/stills they are derived from the pixels.
    pixel_sha256 : str
        Hex SHA-256 of the de-identified frame bytes.
    deid_record : dict
        JSON-serialisable record: profile, options, CID 7050 codes, pixel actions, gate checks.
    display_name : str
        Pseudonymous name to show (never the original file name).
    """

    __slots__ = ("clip", "study_uid", "series_uid", "instance_uid", "pixel_sha256", "deid_record", "display_name")

    def __init__(self, *, _token: object, clip: Clip, study_uid: str, series_uid: str, instance_uid: str,
                 pixel_sha256: str, deid_record: dict, display_name: str) -> None:
        if _token is not _GATE_TOKEN:
            raise TypeError("DeidentifiedClip is produced only by the de-identification gate (echomeasure.ingest.load)")
        self.clip = clip
        self.study_uid = study_uid
        self.series_uid = series_uid
        self.instance_uid = instance_uid
        self.pixel_sha256 = pixel_sha256
        self.deid_record = deid_record
        self.display_name = display_name

    @property
    def kind(self) -> str:
        """"2d" or "doppler" (a spectral region makes it Doppler)."""
        return self.clip.kind

    @property
    def frame_time_ms(self) -> float | None:
        """Time between frames in ms (None for stills)."""
        return self.clip.frame_time_ms

    @property
    def n_frames(self) -> int:
        return self.clip.n_frames

    def __repr__(self) -> str:
        return (f"DeidentifiedClip({self.display_name!r}, kind={self.kind}, frames={self.clip.n_frames}, "
                f"{self.clip.width}x{self.clip.height})")


def _sha256(buf: memoryview | bytes | np.ndarray) -> str:
    return hashlib.sha256(buf.data if isinstance(buf, np.ndarray) else buf).hexdigest()


def admit_dicom(original: OriginalIdentifiers, data: bytes | memoryview, record: dict, *, user_cm_per_px: float | None = None,
                secret: bytes | None = None) -> DeidentifiedClip:
    """Gate a de-identified DICOM (bytes) and build the clip from what passed.

    The frames are a read-only view of the pixel data inside ``data``: what passed the gate is
    exactly what is handed on, with no second decode and no copy.
    """
    from echomeasure.ingest.dicom_io import color_data_extra, frame_time_ms, regions_from_dataset

    report, ds, span = check_dicom_bytes(original, data, secret=secret)
    if span is None:
        raise _refuse("the pixel data is missing or not native")
    rows, cols = int(ds.Rows), int(ds.Columns)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    start, length = span
    if length < n * rows * cols * 3 or int(ds.SamplesPerPixel) != 3 or int(ds.BitsAllocated) != 8:
        raise _refuse("the pixel data is not 8-bit RGB of the declared size")
    pixels = memoryview(data)[start : start + n * rows * cols * 3]
    frames = np.frombuffer(pixels, dtype=np.uint8).reshape(n, rows, cols, 3)
    clip = Clip(
        frames=frames,
        frame_time_ms=frame_time_ms(ds),
        regions=regions_from_dataset(ds),
        source_kind="dicom",
        source_name="",
        sop_class_uid=str(ds.get("SOPClassUID", "")) or None,
        modality=str(ds.get("Modality", "")) or None,
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "")) or None,
        user_cm_per_px=user_cm_per_px,
        extra=color_data_extra(ds),  # the clip's declared colour flow (Clip.declared_color_flow)
    )
    instance_uid = str(ds.SOPInstanceUID)
    # The study date as it stands in the object that passed the gate (shifted per patient, or
    # None when removed): the worklist shows it.
    full_record = dict(record, gate=report.as_dict(), study_date=str(ds.get("StudyDate", "") or "") or None)
    dc = DeidentifiedClip(
        _token=_GATE_TOKEN, clip=clip, study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
        instance_uid=instance_uid, pixel_sha256=_sha256(pixels), deid_record=full_record,
        display_name=f"US {instance_uid}",
    )
    clip.source_name = dc.display_name
    return dc


def admit_frames(original: OriginalIdentifiers, data: bytes, kind: str, frames: np.ndarray, record: dict, *,
                 frame_time_ms: float | None, source_kind: str, secret: bytes,
                 user_cm_per_px: float | None = None) -> DeidentifiedClip:
    """Gate a de-identified video/still (bytes) and hand on the cleaned frames that were encoded.

    Videos carry no UIDs: pseudonymous ``2.25`` UIDs are derived from the de-identified pixels
    with the site secret (the same clip gives the same UIDs).
    """
    from echomeasure.ingest.deid import UidRemapper

    report = check_container_bytes(original, data, kind)
    frames = np.ascontiguousarray(frames)
    frames.setflags(write=False)
    digest = _sha256(frames.data.cast("B"))
    remap = UidRemapper(secret)
    instance_uid = remap(f"echomeasure-pixels-{digest}")
    clip = Clip(frames=frames, frame_time_ms=frame_time_ms, regions=(), source_kind=source_kind,  # type: ignore[arg-type]
                source_name="", user_cm_per_px=user_cm_per_px)
    dc = DeidentifiedClip(
        _token=_GATE_TOKEN, clip=clip, study_uid=remap(f"echomeasure-study-{digest}"),
        series_uid=remap(f"echomeasure-series-{digest}"), instance_uid=instance_uid, pixel_sha256=digest,
        deid_record=dict(record, gate=report.as_dict()),
        display_name=f"{'Video' if source_kind == 'video' else 'Image'} {instance_uid}",
    )
    clip.source_name = dc.display_name
    return dc


def passes_gate(candidate: str | Path | bytes, original_path: str | Path, *, secret: bytes | None = None) -> bool:
    """True when ``candidate`` (a de-identified file or its bytes) passes the gate for ``original_path``.

    For DICOM: identifiers are collected from the original file and the candidate's bytes are
    checked (preamble, private tags, identifying values, UIDs, dates, de-identification marks).
    For videos/stills: the original's container metadata against the candidate's.  Give
    ``secret`` when the original is itself an echomeasure output (re-de-identification).  Never
    raises for a refusal (returns False); raises for unreadable originals.
    """
    from echomeasure.ingest.dicom_io import read_dataset
    from echomeasure.ingest.video_io import container_metadata, image_metadata, sniff

    data = candidate if isinstance(candidate, (bytes, bytearray)) else Path(candidate).read_bytes()
    kind, _ = sniff(Path(original_path))
    try:
        if kind in ("dicom", "unknown"):
            ids = collect_dicom_identifiers(read_dataset(original_path, stop_before_pixels=True), secret=secret)
            check_dicom_bytes(ids, bytes(data), secret=secret)
        elif kind == "video":
            check_container_bytes(collect_container_identifiers(container_metadata(original_path)), bytes(data), "video")
        else:
            check_container_bytes(collect_container_identifiers(image_metadata(Path(original_path).read_bytes())),
                                  bytes(data), "image")
    except DeidentificationError:
        return False
    return True
