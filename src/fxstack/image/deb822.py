"""Debian control paragraphs (`Field: value`, continuation lines folded in): the one reader for
a .deb's control file, a dpkg status file and what the runtime policy and the SBOM take from it."""

from __future__ import annotations


def paragraphs(text: str) -> list[dict[str, str]]:
    found = []
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in para.splitlines():
            if line[:1] in (" ", "\t"):
                if key:
                    fields[key] += " " + line.strip()
                continue
            if ":" not in line:
                continue
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
        if fields:
            found.append(fields)
    return found
