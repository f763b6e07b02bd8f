"""Static file storage: servestatic's hashed, compressed files, with ES module imports rewritten too."""

from __future__ import annotations

from servestatic.storage import CompressedManifestStaticFilesStorage


class ManifestStorage(CompressedManifestStaticFilesStorage):
    """Hashed and gzip-compressed names; ``import ... from "./roomapi.js";`` points at the hashed file as well.

    Without the rewrite a page script cached for a year would load whatever
    ``roomapi.js`` the server has today, which after an upgrade may not match it.
    Only static imports that start a line are rewritten: Django's own pattern also
    matches the usage example in a comment (roomapi.js imports itself there, and
    its hash would never settle).
    """

    support_js_module_import_aggregation = True
    _js_module_import_aggregation_patterns = (
        "*.js",
        (
            (
                r"""(?m)^(?P<matched>import(?s:(?P<import>[\s\{].*?|\*\s*as\s*\w+))"""
                r"""\s*from\s*['"](?P<url>[./].*?)["']\s*;)""",
                """import%(import)s from "%(url)s";""",
            ),
        ),
    )

    def url(self, name: str | None, force: bool = False) -> str:
        """The hashed URL even under DEBUG: STATIC_MANIFEST alone decides (Django would fall back to plain names)."""
        return super().url(name, force=True)
