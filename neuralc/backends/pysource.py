"""Text from a model file placed into generated Python source: one escaping function per context.

The PyTorch and Keras targets write Python that quotes the model: its file name, layer and
input names, loss, metric and schedule names, lines of its text. Any of them may hold a
newline, ``\"\"\"``, a backslash, a quote, NUL or a character Python reads as another (it
normalises identifiers with NFKC: ``ﬁ`` is read as ``fi``). Placed raw, such text ends a
comment or a docstring early and what follows runs when the file is imported. So generated
code places model text only through these functions, one per context:

- :func:`comment`: the text of a ``# ...`` comment, on one line;
- :func:`doc`: text inside a ``\"\"\"...\"\"\"`` docstring;
- :func:`string`: a string literal;
- :func:`identifier`: a name Python reads back as exactly that name.
"""

from __future__ import annotations

import json
import keyword
import re
import unicodedata

__all__ = ["comment", "doc", "string", "identifier", "is_plain_identifier"]


def _escape_unprintable(text: str) -> str:
    """Every character that is not printable (line breaks of any kind, NUL, escapes, lone
    surrogates from undecodable file names) as its backslash escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def comment(text: str) -> str:
    """``text`` made safe as the body of a ``#`` comment: one line, nothing Python reads."""
    return _escape_unprintable(text)


def doc(text: str) -> str:
    """``text`` made safe inside a triple-quoted docstring: backslashes and quotes escaped
    (no ``\"\"\"`` can end it, no escape sequence is formed), unprintable characters spelt
    out so that the docstring's value shows them as text (``\\n``, not a line break)."""
    return "".join(("\\" + c if c in '\\"' else c) if c.isprintable()
                   else "\\" + repr(c)[1:-1] for c in text)


def string(text: str) -> str:
    """A double-quoted Python string literal of ``text``, whatever it holds."""
    return json.dumps(text)


def is_plain_identifier(name: str) -> bool:
    """Whether ``name`` can be written as a Python identifier and reads back as itself:
    an identifier, no keyword, and unchanged by NFKC normalisation."""
    return (name.isidentifier() and not keyword.iskeyword(name)
            and unicodedata.normalize("NFKC", name) == name)


def identifier(text: str) -> str:
    """A Python identifier close to ``text`` that Python reads back unchanged: normalised as
    Python normalises names (``ﬁ`` becomes ``fi``, ``x²`` ``x2``; callers keep names distinct
    after that), non-word characters as ``_``, and anything still unusable as ASCII only.
    It may be a keyword or start with a digit; callers add their own prefix or suffix."""
    s = re.sub(r"\W", "_", unicodedata.normalize("NFKC", text))
    if not (s.isidentifier() or s[:1].isdigit()) or unicodedata.normalize("NFKC", s) != s:
        s = re.sub(r"[^A-Za-z0-9_]", "_", s)
    return s
