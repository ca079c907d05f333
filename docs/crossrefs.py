"""Cross-references by public name, for the multiomix documentation.

Python objects know the (often private) module that defines them: ``mudata._core.mudata.MuData``,
``multiomix.models.base._model.MultiomixModel``, ``matplotlib.axes._axes.Axes``. Type hints and class bases
are rendered from those paths, which neither this site nor the other libraries' intersphinx inventories
list. This extension maps an object to its **public name** (the shortest package path from which it can be
imported, e.g. ``mudata.MuData``) and resolves references through it:

* ``autodoc-process-bases``: class bases are shown under their public name; bases without one (private
  helpers such as a mixin in a private module) are replaced by their own bases.
* ``missing-reference``: a reference that did not resolve is looked up again under the object's public name,
  in this site (also for a documented alias: ``multiomix.module.UnitedNetModule`` is documented as
  ``multiomix.models.UnitedNetModule``; an inherited method ``CrossAttOmics.train`` as
  ``MultiomixModel.train``) and then in the intersphinx inventories.
* ``autodoc-process-docstring``: a member without a docstring of its own does not show the docstring it
  inherits from another library (``torch.nn.Module.forward``'s, written for torch's site).

Nothing is silenced here: a reference that still does not resolve is reported by Sphinx as before.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

from sphinx.util.nodes import make_refnode

PACKAGE = "multiomix"


def lookup(name: str) -> Any:
    """Import a dotted name (module, then attributes); ``None`` when it does not exist.

    Only packages that are already imported are looked into, so a reference target never imports a module
    for its side effects.
    """
    parts = name.split(".")
    if parts[0] not in sys.modules:
        return None
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:  # noqa: BLE001 - any import failure means "not this prefix"
            continue
        try:
            for attr in parts[i:]:
                obj = inspect.getattr_static(obj, attr) if inspect.isclass(obj) else getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _same(a: Any, b: Any) -> bool:
    return _unwrap(a) is _unwrap(b)


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, (classmethod, staticmethod)):
        return obj.__func__
    return getattr(obj, "__func__", obj)


def public_names(obj: Any) -> list[str]:
    """Importable paths of a class or function without private parts, shortest first.

    The candidates are the prefixes of the module that defines it: ``mudata._core.mudata.MuData`` gives
    ``mudata.MuData``; ``lightning.pytorch.callbacks.callback.Callback`` gives ``lightning.Callback``,
    ``lightning.pytorch.Callback`` and ``lightning.pytorch.callbacks.Callback``.
    """
    obj = _unwrap(obj)
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return []
    if any(p.startswith("_") for p in qualname.split(".")):
        return []
    parts = module.split(".")
    names = []
    for i in range(1, len(parts) + 1):
        if any(p.startswith("_") for p in parts[1:i]):
            break
        candidate = ".".join(parts[:i] + [qualname])
        found = lookup(candidate)
        if found is not None and _same(found, obj):
            names.append(candidate)
    return names


def public_name(obj: Any) -> str | None:
    """Shortest importable path of a class or function without private parts (``None``: it has none)."""
    names = public_names(obj)
    return names[0] if names else None


def format_annotation(annotation: Any, config) -> str | None:
    """``typehints_formatter``: a class in a type hint is linked under its public name.

    A multiomix class without a public name (a private helper type) is shown as text, not as a link to a page
    that does not exist. Everything else (builtins, generics, typing forms) is left to sphinx-autodoc-typehints.
    """
    if not inspect.isclass(annotation) or annotation.__module__ in ("builtins", "typing"):
        return None
    name = public_name(annotation)
    if name is None:
        return f"``{annotation.__qualname__}``" if annotation.__module__.startswith(PACKAGE + ".") else None
    if name == f"{annotation.__module__}.{annotation.__qualname__}":
        return None
    return f":py:class:`~{name}`"


def _is_public(cls: type) -> bool:
    name = public_name(cls)
    return name is not None and not any(p.startswith("_") for p in name.split("."))


def process_bases(app, name, obj, options, bases: list) -> None:
    """Show each base under its public name; a base without one is replaced by its own bases."""

    def expand(base: Any) -> list:
        if base is object:
            return []
        if isinstance(base, str) or not inspect.isclass(base):
            return [base]
        if _is_public(base):
            return [f":py:class:`~{public_name(base)}`"]
        return [b for parent in base.__bases__ for b in expand(parent)]

    new = [b for base in bases for b in expand(base)]
    bases[:] = list(dict.fromkeys(new))


def _documented(app, env) -> dict[int, str]:
    """Python objects documented on this site, by identity -> documented name (built once per build).

    Kept on the application, not on the environment, which is pickled between builds (identities are not).
    """
    cache = getattr(app, "_multiomix_documented", None)
    if cache is None:
        cache = {}
        for fullname, entry in env.get_domain("py").objects.items():
            if entry.objtype not in ("class", "function", "method", "property", "exception"):
                continue
            obj = lookup(fullname)
            if obj is not None:
                cache.setdefault(id(_unwrap(obj)), fullname)
        app._multiomix_documented = cache
    return cache


def _target_object(target: str, module: str | None, cls: str | None) -> Any:
    candidates = [target]
    if module and cls:
        candidates.insert(0, f"{module}.{cls}.{target}")
    if module:
        candidates.insert(1 if cls else 0, f"{module}.{target}")
    for candidate in candidates:
        obj = lookup(candidate)
        if obj is not None:
            return obj
    return None


def missing_reference(app, env, node, contnode):
    """Resolve a Python reference again under its object's public or documented name."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    obj = _target_object(target, node.get("py:module"), node.get("py:class"))
    if obj is None or not (inspect.isclass(obj) or callable(obj) or isinstance(obj, property)):
        return None
    domain = env.get_domain("py")
    names = [public_name(obj), _documented(app, env).get(id(_unwrap(obj)))]
    for name in names:
        if name and name in domain.objects:
            entry = domain.objects[name]
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name)
    from sphinx.ext.intersphinx import missing_reference as intersphinx_reference

    for name in public_names(obj):
        if name != target and not name.startswith(PACKAGE + "."):
            retry = node.deepcopy()
            retry["reftarget"] = name
            found = intersphinx_reference(app, env, retry, contnode)
            if found is not None:
                return found
    return None


def process_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """Drop a docstring a member only inherits from another library (it is written for that library's site).

    Likewise for a constant without a ``#:`` comment, which would otherwise show its type's docstring
    (``dict``'s for a dict).
    """
    if what in ("data", "attribute") and not type(obj).__module__.startswith(PACKAGE):
        if "\n".join(lines).strip() == inspect.cleandoc(type(obj).__doc__ or "").strip():
            lines.clear()
        return
    if what not in ("method", "attribute", "property") or not lines:
        return
    func = _unwrap(obj.fget if isinstance(obj, property) else obj)
    if getattr(func, "__doc__", None) or not getattr(func, "__module__", "").startswith(PACKAGE):
        return
    owner = lookup(name.rsplit(".", 1)[0])
    attr = name.rsplit(".", 1)[1]
    if not inspect.isclass(owner):
        return
    for base in owner.__mro__[1:]:
        inherited = base.__dict__.get(attr)
        doc = getattr(_unwrap(inherited.fget if isinstance(inherited, property) else inherited), "__doc__", None)
        if doc:
            if not base.__module__.startswith(PACKAGE):
                lines.clear()
            return


def setup(app) -> dict:
    app.connect("autodoc-process-bases", process_bases)
    app.connect("autodoc-process-docstring", process_docstring, priority=400)
    app.connect("missing-reference", missing_reference, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
