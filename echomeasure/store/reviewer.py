"""Who reviewed: the one rule for reviewer names, used by the store, the UI and the API.

Without a login the typed name is trimmed, must be non-empty, at most
:data:`MAX_REVIEWER_CHARS` characters and free of control and formatting characters (NUL, line
breaks, bidirectional overrides, zero-width characters), so a name cannot forge lines in logs
or exports.  With a login (``echomeasure demo --auth``) the reviewer recorded is the logged-in
user; a typed name that differs is kept beside it as the display name.
"""

from __future__ import annotations

import unicodedata

from echomeasure.errors import StoreError

MAX_REVIEWER_CHARS = 100
# Control (Cc), format (Cf), surrogate, private-use, unassigned, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def validate_reviewer(name: object) -> str:
    """The reviewer name as it will be stored (trimmed); :class:`StoreError` when refused.

    The message never repeats the name (it may be huge or carry control characters).
    """
    if name is not None and not isinstance(name, str):
        raise StoreError("the reviewer's name must be text")
    text = (name or "").strip()
    if not text:
        raise StoreError("a review needs the reviewer's name; enter it in the Reviewer field before saving")
    if len(text) > MAX_REVIEWER_CHARS:
        raise StoreError(
            f"the reviewer's name is {len(text)} characters long; use at most {MAX_REVIEWER_CHARS}"
        )
    if any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in text):
        raise StoreError("the reviewer's name contains control characters; type it again")
    return text


def resolve_reviewer(typed: object, logged_in_user: str | None) -> tuple[str, str | None]:
    """``(reviewer, display_name)`` to record for a review.

    Parameters
    ----------
    typed
        What the user typed in the Reviewer field (or sent as ``reviewer`` through the API).
    logged_in_user
        The authenticated user name, or None when the app runs without a login.

    With a login the reviewer is the logged-in user, whatever was typed; the typed name is kept
    as display name when it is valid and differs.  Without one, the typed name is validated.
    """
    if logged_in_user:
        user = validate_reviewer(logged_in_user)
        display = typed.strip() if isinstance(typed, str) else ""
        if not display or display == user:
            return user, None
        return user, validate_reviewer(display)
    return validate_reviewer(typed), None


__all__ = ["MAX_REVIEWER_CHARS", "resolve_reviewer", "validate_reviewer"]
