"""Label values and HELP text in the Prometheus text format (0.0.4), for every reader.

The format escapes three characters in a label value: backslash, double quote and line feed
(``\\\\``, ``\\"``, ``\\n``). It has no escape for the other characters a reader may take for the
end of a line: a carriage return, vertical tab, form feed, the separators U+001C..U+001E, next
line (U+0085) and the Unicode line and paragraph separators. Prometheus reads them raw, but a
reader that splits lines the way Python does (``str.splitlines``, or a page decoded through a
text stream with universal newlines, as prometheus_client's parser reads a file) cuts the sample
in two and rejects the whole page. Lone surrogates (possible in a Python string, never in UTF-8)
cannot be written at all.

So such characters are written as their Python escape sequence *as text*: a cohort value
``"a\\rb"`` is served as the five characters ``a\\rb`` (backslash, r), which every reader parses
back to that text. The value an on-call engineer sees names the character; the one ambiguity is
a stored value that literally holds such a sequence, which is served the same way.
"""

from __future__ import annotations

import re
from typing import Final

#: What a reader may split lines at besides ``\n``, and what cannot be encoded as UTF-8.
_UNSAFE: Final = re.compile("[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029\ud800-\udfff]")
_NAMED: Final = {"\r": "\\r", "\x0b": "\\v", "\x0c": "\\f"}


def _spelled(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def displayable(value: str) -> str:
    """``value`` with every character no text-format reader can take safely spelled as its escape
    sequence (see the module docstring); most values are returned as they are."""
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(_spelled, value)


def escape_label_value(value: str) -> str:
    """A label value as it goes between the double quotes of a sample line."""
    value = displayable(value)
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def escape_help(text: str) -> str:
    """HELP text: backslash and line feed escaped (and the unsafe characters spelled out)."""
    return displayable(text).replace("\\", "\\\\").replace("\n", "\\n")
