"""A small Sphinx extension that keeps the rendered pages free of console errors in a browser.

Loaded by Jupyter Book through ``_config.yml``::

    sphinx:
      local_extensions:
        sphinx_page_fixes: scripts

Two errors that every page of a Jupyter Book 1 site otherwise shows in the browser console
(tests/test_browser.py finds them on a fresh browser profile):

* ``Identifier 'THEBE_JS_URL' has already been declared``: sphinx-thebe 0.3.1 adds an inline script
  declaring ``const THEBE_JS_URL`` after the HTML builder has started, and Sphinx 7.4 puts that script
  into every page twice (once from its registry, once from the builder), so the second one is a syntax
  error. We drop exact duplicates from each page's script list.
* ``Got invalid theme mode: . Resetting to auto.``: the pydata-sphinx-theme page template falls back
  to ``default_mode`` when the visitor has no stored light/dark choice, and that template variable is
  empty unless set. We set it to ``"auto"`` (follow the system), the theme's own default.
"""

from __future__ import annotations

from typing import Any


def _dedupe_scripts(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    scripts = context.get("script_files")
    if scripts:
        seen, unique = set(), []
        for script in scripts:
            key = (str(getattr(script, "filename", script) or ""), repr(getattr(script, "attributes", None)))
            if key not in seen:
                seen.add(key)
                unique.append(script)
        scripts[:] = unique
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
