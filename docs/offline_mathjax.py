"""An MkDocs hook: MathJax served from the site itself, so equations render offline.

The MathJax 3 es5 bundle comes from the `django-static-mathjax` package of the docs
extra (plain static files, no Django needed). The hook adds its TeX-to-HTML component,
the fonts and the extensions it loads on demand to the site under
`javascripts/mathjax/`, where mkdocs.yml's `extra_javascript` points: the built site
fetches nothing from the network.
"""

import importlib.util
import pathlib

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File


TARGET = "javascripts/mathjax"
# tex-chtml.js loads the rest relative to its own address: TeX extensions that
# autoload on a macro, the CHTML fonts, and the menu's accessibility parts.
PARTS = ("tex-chtml.js", "input/tex/extensions", "output/chtml/fonts", "ui", "a11y", "sre")


def es5_folder() -> pathlib.Path:
    """The MathJax es5 folder installed by `django-static-mathjax`.

    **Returns:**

    The folder's path; raises `PluginError` naming the fix when it is not installed.
    """
    spec = importlib.util.find_spec("mathjax")
    folder = None
    if spec is not None and spec.origin is not None:
        folder = pathlib.Path(spec.origin).parent / "static" / "mathjax" / "es5"
    if folder is None or not (folder / "tex-chtml.js").is_file():
        raise PluginError(
            "docs/offline_mathjax.py: the MathJax bundle is not installed (no "
            "mathjax/static/mathjax/es5/tex-chtml.js). Install the docs extra: "
            "pip install -e '.[docs]' (make docs does)."
        )
    return folder


def on_files(files, config):
    """Adds the MathJax files to the site's files (MkDocs hook)."""
    es5 = es5_folder()
    for part in PARTS:
        path = es5 / part
        for source in [path] if path.is_file() else sorted(path.rglob("*")):
            if source.is_file():
                uri = f"{TARGET}/{source.relative_to(es5).as_posix()}"
                files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files
