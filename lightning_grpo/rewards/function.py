"""A plain Python function as a reward, the way TRL's ``reward_funcs`` are written.

A reward function of your own needs no class::

    def brevity(completions, **kwargs) -> list[float]:
        return [-len(c) / 100 for c in completions]

:class:`FunctionReward` calls it once per rollout batch with keyword arguments: ``completions`` (N
strings), ``prompts`` (N strings, the prompt text each completion answers), ``answer`` (N gold answers)
and every other column of the data set (the problem's fields: ``question``, ``solution``, ...) as a
list of N values (None where a row lacks it). It returns N numbers. In a config, ``data.rollout.rewards``
takes the function's import path, either bare (``myreward.brevity``: named ``brevity``, weight 1) or
wrapped for a name, a weight or to make it the run's correctness reward::

    {class_path: lightning_grpo.rewards.FunctionReward,
     init_args: {function: myreward.brevity, name: short, weight: 0.5}}

:func:`reward_function` turns a list entry (a :class:`RewardFunction` or an import path) into a
reward function, refusing a path that does not import or is not callable with an error naming it.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
from typing import Any, Callable, Sequence

from lightning_grpo.errors import ConfigurationError, short_repr
from lightning_grpo.rewards.base import RewardBatch, RewardFunction

FIXED_ARGUMENTS = ("prompts", "completions", "answer")


class FunctionReward(RewardFunction):
    """``function(prompts=..., completions=..., answer=..., **columns) -> list[float]`` as a reward.

    ``function`` is an import path (``myreward.brevity``; a module in the working directory imports as
    it is) or, from Python, the callable itself. ``name`` defaults to the function's name.
    ``correctness=True`` makes it the run's correctness reward: a completion is right when the
    function gives it ``correct_value`` (validation accuracy, dynamic sampling, AGPO read that).
    """

    def __init__(
        self,
        function: str | Callable[..., Sequence[float]],
        name: str | None = None,
        weight: float = 1.0,
        correctness: bool = False,
        correct_value: float = 1.0,
    ) -> None:
        if isinstance(function, str):
            self.path = function
            self.function = import_callable(function)
        elif callable(function):
            self.function = function
            self.path = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
        else:
            raise TypeError(f"FunctionReward needs a function or its import path, got {function!r}")
        super().__init__(name=name or getattr(self.function, "__name__", None) or self.path.rsplit(".", 1)[-1], weight=weight)
        self.is_correctness = correctness
        self.correct_value = correct_value

    def describe(self) -> str:
        return f"function {self.path}"

    def score(self, batch: RewardBatch) -> list[float]:
        return self.function(**self.arguments(batch))

    def arguments(self, batch: RewardBatch) -> dict[str, list[Any]]:
        """The keyword arguments of one call: the fixed ones and one list [N] per data column."""
        rows = batch.metadata or [{} for _ in batch.completions]
        columns: dict[str, list[Any]] = {}
        for row in rows:
            for key in row:
                columns.setdefault(key, [])
        clash = sorted(set(columns) & set(FIXED_ARGUMENTS))
        if clash:
            raise ValueError(
                f"reward {self.name!r}: the data has a column named {clash[0]!r}, which would hide the argument of "
                f"that name ({', '.join(FIXED_ARGUMENTS)} are passed by the reward); rename the column"
            )
        for key in columns:
            columns[key] = [row.get(key) for row in rows]
        return {"prompts": batch.prompts, "completions": batch.completions, "answer": batch.golds, **columns}


def reward_function(entry: RewardFunction | str) -> RewardFunction:
    """A ``data.rollout.rewards`` entry as a reward function: itself, or what its import path names.

    A path to a plain function becomes a :class:`FunctionReward` (named after the function, weight 1);
    a path to a :class:`RewardFunction` subclass is built with its defaults.
    """
    if isinstance(entry, RewardFunction):
        return entry
    if not isinstance(entry, str):
        raise TypeError(f"a reward is a RewardFunction or the import path of a function, got {entry!r}")
    if "." not in entry.strip():  # a bare name: a misspelled reward class, most likely
        raise ConfigurationError(unknown_reward_class(entry.strip()))
    target = import_object(entry, "reward")
    if inspect.isclass(target) and issubclass(target, RewardFunction):
        try:
            return target()
        except TypeError as err:
            raise ValueError(
                f"reward {entry!r} is a RewardFunction class that needs arguments ({err}): give it as "
                f"{{class_path: {entry}, init_args: {{...}}}}"
            ) from err
    return FunctionReward(entry)  # refuses a class or a value that is no function


def unknown_reward_class(name: str) -> str:
    """One line for a bare ``name`` in ``data.rollout.rewards``: the reward classes known, and the closest."""
    from lightning_grpo.class_name_hints import known_subclasses

    names = sorted({p.rsplit(".", 1)[1] for p in known_subclasses(f"{RewardFunction.__module__}.RewardFunction")})
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return (
        f"data.rollout.rewards: no class named {name!r}" + (f"; did you mean {close[0]}?" if close else ".")
        + f" Allowed: {', '.join(names)}, or the import path of a class or function of your own (module.name, "
        "e.g. myreward.brevity for the function brevity in myreward.py in the working directory)"
    )


def import_callable(path: str) -> Callable[..., Any]:
    """The callable at ``path`` (``module.function``); a ValueError naming the path otherwise."""
    target = import_object(path, "reward function")
    if inspect.isclass(target) or not callable(target):
        what = f"the class {target.__name__}" if inspect.isclass(target) else f"{type(target).__name__} {short_repr(target)}"
        raise ValueError(f"reward function {path!r} is {what}, not a function (completions, **kwargs) -> list[float]")
    return target


def import_object(path: str, what: str) -> Any:
    """The object at the import path ``path`` (``package.module.name``, attributes after the module allowed)."""
    parts = path.strip().split(".")
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise ValueError(
            f"{what} {path!r} is not an import path: write module.name, e.g. myreward.brevity for the function "
            "brevity in myreward.py in the working directory"
        )
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and (module_name == err.name or module_name.startswith(err.name + ".")):
                continue  # this prefix is no module: try a shorter one
            raise ValueError(f"{what} {path!r}: importing {module_name!r} failed: {err}") from err
        except Exception as err:
            raise ValueError(f"{what} {path!r}: importing {module_name!r} failed: {type(err).__name__}: {err}") from err
        target: Any = module
        for depth, attribute in enumerate(parts[split:]):
            if not hasattr(target, attribute):
                owner = ".".join(parts[: split + depth])
                where = f" ({module.__file__})" if depth == 0 and getattr(module, "__file__", None) else ""
                close = difflib.get_close_matches(attribute, [n for n in dir(target) if not n.startswith("_")], n=3)
                hint = f"; did you mean {', '.join(repr(f'{owner}.{c}') for c in close)}?" if close else ""
                raise ValueError(f"{what} {path!r}: {owner}{where} has no {attribute!r}{hint}")
            target = getattr(target, attribute)
        return target
    raise ValueError(
        f"{what} {path!r}: no module {parts[0]!r} (looked in the working directory {os.getcwd()} and on sys.path)"
    )
