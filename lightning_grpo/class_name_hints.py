"""A misspelled class name in a config (``--model.objective=GRPOO``, ``--data.rollout.rewards+=MathRewards``)
as one line: the option, the name, the classes it could be, and the closest one.

jsonargparse reports an unknown class name in a nested message ("Expected a dot import path string:
GRPOO", under ``Parser key "model.objective"`` and ``Subtypes: [<class '...Objective'>, ...]``) after
the whole usage text, and without the names it would have accepted. :func:`unknown_class_hint` reads
that message back: the option (its ``Parser key`` lines, outermost first), the name given and the base
classes, then lists the base classes' known subclasses the way jsonargparse resolves short names
(:func:`jsonargparse._typehints.get_all_subclass_paths`: the classes imported so far) and picks the
closest with :mod:`difflib`.
"""

from __future__ import annotations

import difflib
import importlib
import re

# The name jsonargparse could not resolve: a short name it found no subclass for, or a dotted path that
# does not import.
_BAD_NAME = re.compile(
    r"Expected a dot import path string: (?P<short>\S+)"
    r"|Problem with given class_path '(?P<path>[^']+)':\s*\n\s*(?:module '[^']+' has no attribute|No module named)"
)
# The project's own line for a name it could not resolve while building a class (e.g. a reward given by a
# bare name), nested by jsonargparse under the class it was building.
_OWN_HINT = re.compile(r"^\s*(?:- )?(?P<line>[\w.]+: no class named .*)$", re.M)
_PARSER_KEY = re.compile(r'Parser key "([^"]+)"')
_SUBTYPES = re.compile(r"Subtypes: \[(.*)\]")
_CLASS_PATH = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)\b")


def known_subclasses(base_path: str) -> list[str]:
    """Import paths of the non-abstract subclasses of the class at ``base_path`` imported so far (not the base)."""
    from jsonargparse._typehints import get_all_subclass_paths

    module_name, _, name = base_path.rpartition(".")
    try:
        base = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        return []
    return [p for p in get_all_subclass_paths(base, closed_types=False) if p.rsplit(".", 1)[1] != name]


def unknown_class_hint(message: str) -> str | None:
    """One line for a jsonargparse ``message`` about an unknown class name, or None for any other message."""
    bad = _BAD_NAME.search(message)
    if bad is None:
        return None
    given = bad.group("short") or bad.group("path")
    before = message[: bad.start()]
    option = ".".join(_PARSER_KEY.findall(before)) or "an option"
    subtypes = _SUBTYPES.findall(before)
    bases = [p for p in _CLASS_PATH.findall(subtypes[-1]) if p.count(".") > 1] if subtypes else []
    paths = sorted({p for base in bases for p in known_subclasses(base)}, key=lambda p: p.rsplit(".", 1)[1])
    names = [p.rsplit(".", 1)[1] for p in paths]
    line = f"{option}: no class named {given!r}"
    if not names:
        return line + " (give a class's full import path, e.g. mypackage.module.ClassName)"
    close = difflib.get_close_matches(given.rsplit(".", 1)[-1], names, n=1, cutoff=0.6)
    line += f"; did you mean {close[0]}?" if close else "."
    return line + f" Allowed: {', '.join(names)}, or the import path of a class of your own (module.ClassName)"


def own_class_hint(message: str) -> str | None:
    """The project's own one-line "no class named" message inside a jsonargparse ``message``, or None."""
    found = _OWN_HINT.search(message)
    return found.group("line") if found else None
