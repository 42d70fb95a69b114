"""Caption predicates: turn an environment's state into captions and goal distances.

A domain-tuned reward CLIP is taught with frames of the user's own environment whose
captions come from simple conditions on the env state (``info["state"]``), so the labels
cost nothing and stay in words. A predicate file is a small YAML document::

    env: CartPole                              # short name or gymnasium id (optional)
    state: [x, x_dot, theta, theta_dot]        # names of the entries of info["state"]
    captions:                                  # the FIRST rule that matches labels a frame
      - caption: pole vertically upright on top of the cart
        when: {abs(theta): [null, 0.03]}       # variable: [low, high), null = unbounded
      - caption: pole tilted far to the left
        when: {theta: [null, -0.1]}
    goal:                                      # optional: what "closer to the goal" means
      caption: pole vertically upright on top of the cart
      baseline: pole and cart                  # the neutral prompt of goal-baseline reward
      target: {theta: 0.0}                     # a value, or an interval [low, high]
      scale: {theta: 0.2}                      # distance = sqrt(sum(((v - target) / scale)^2))
      near: 0.15                               # distance below which goal caption > baseline
      far: 0.5                                 # distance above which baseline > goal caption
      resolution: 0.05                         # distances closer than this rank as ties

Rules:

* a condition's key is a state variable name, or ``abs(name)`` for its absolute value;
  its value is ``[low, high]`` meaning ``low <= v < high`` (``null`` for no bound), or a
  single number meaning ``v == number``; all conditions of a rule must hold;
* frames that match no rule get no caption (they still count for goal rankings);
* ``target`` values may be intervals: distance is 0 inside, and grows with the distance
  to the nearest bound outside (e.g. MountainCar: ``position: [0.45, null]``);
* ``near`` defaults to ``resolution`` (0.05) and ``far`` to ``4 × near``; frames whose
  distance lies between them give no goal-vs-baseline pair (they are ambiguous).

:data:`DEFAULT_PREDICATES` ships the files for CartPole and MountainCar (mirrored in
``examples/cartpole_predicates.yaml`` and ``examples/mountaincar_predicates.yaml``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError

_ABS = re.compile(r"^abs\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# --------------------------------------------------------------------------- defaults

#: The shipped predicate files (same structure as the YAML), by env short name.
DEFAULT_PREDICATES: dict[str, dict[str, Any]] = {
    "CartPole": {
        "env": "CartPole",
        "state": ["x", "x_dot", "theta", "theta_dot"],
        # theta > 0 leans the pole to the right (+x); episodes end past 0.2095 rad (12 deg).
        "captions": [
            {
                "caption": "pole vertically upright on top of the cart",
                "when": {"abs(theta)": [None, 0.03]},
            },
            {"caption": "pole leaning slightly to the right", "when": {"theta": [0.03, 0.1]}},
            {"caption": "pole leaning slightly to the left", "when": {"theta": [-0.1, -0.03]}},
            {"caption": "pole tilted far to the right", "when": {"theta": [0.1, None]}},
            {"caption": "pole tilted far to the left", "when": {"theta": [None, -0.1]}},
        ],
        "goal": {
            "caption": "pole vertically upright on top of the cart",
            "baseline": "pole and cart",
            "target": {"theta": 0.0},
            "scale": {"theta": 0.2},
            "near": 0.15,
            "far": 0.5,
            "resolution": 0.1,
        },
    },
    "MountainCar": {
        "env": "MountainCar",
        "state": ["position", "velocity"],
        # The valley's bottom is at -0.52, the flag at 0.45, the track spans [-1.2, 0.6].
        "captions": [
            {
                "caption": "a car at the peak of the mountain, next to the yellow flag",
                "when": {"position": [0.4, None]},
            },
            {
                "caption": "a car high on the right slope, below the yellow flag",
                "when": {"position": [0.1, 0.4]},
            },
            {
                "caption": "a car low on the right slope of the valley",
                "when": {"position": [-0.35, 0.1]},
            },
            {"caption": "a car at the bottom of the valley", "when": {"position": [-0.75, -0.35]}},
            {
                "caption": "a car on the left slope of the valley",
                "when": {"position": [None, -0.75]},
            },
        ],
        "goal": {
            "caption": "a car at the peak of the mountain, next to the yellow flag",
            "baseline": "a car in the mountain",
            "target": {"position": [0.45, None]},
            "scale": {"position": 1.65},
            "near": 0.05,
            "far": 0.4,
            "resolution": 0.05,
        },
    },
}

# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Condition:
    """``low <= f(state[var]) < high`` with ``f`` the identity or ``abs``."""

    var: str
    low: float | None = None
    high: float | None = None
    absolute: bool = False

    def values(self, states: Mapping[str, np.ndarray]) -> np.ndarray:
        v = np.asarray(states[self.var], dtype=np.float64)
        return np.abs(v) if self.absolute else v

    def holds(self, states: Mapping[str, np.ndarray]) -> np.ndarray:
        """Boolean mask over the frames whose state satisfies the condition."""
        v = self.values(states)
        ok = np.isfinite(v)
        if self.low is not None and self.high is not None and self.low == self.high:
            return ok & (v == self.low)
        if self.low is not None:
            ok &= v >= self.low
        if self.high is not None:
            ok &= v < self.high
        return ok

    def __str__(self) -> str:
        name = f"abs({self.var})" if self.absolute else self.var
        return f"{name} in [{self.low}, {self.high})"


@dataclass(frozen=True)
class CaptionRule:
    """A caption and the conditions (all must hold) under which it describes a frame."""

    caption: str
    conditions: tuple[Condition, ...]

    def matches(self, states: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(states.values())))
        ok = np.ones(n, dtype=bool)
        for c in self.conditions:
            ok &= c.holds(states)
        return ok


@dataclass(frozen=True)
class GoalSpec:
    """The goal caption, the baseline caption and a distance of states to the goal."""

    caption: str
    baseline: str
    target: Mapping[str, tuple[float | None, float | None]]
    scale: Mapping[str, float]
    near: float
    far: float
    resolution: float

    def distance(self, states: Mapping[str, np.ndarray]) -> np.ndarray:
        """``sqrt(sum(((v - target) / scale)^2))`` per frame; 0 inside target intervals."""
        total = None
        for var, (lo, hi) in self.target.items():
            v = np.asarray(states[var], dtype=np.float64)
            gap = np.zeros_like(v)
            if lo is not None:
                gap = np.where(v < lo, lo - v, gap)
            if hi is not None:
                gap = np.where(v > hi, v - hi, gap)
            term = (gap / self.scale.get(var, 1.0)) ** 2
            total = term if total is None else total + term
        assert total is not None
        return np.sqrt(total)


@dataclass(frozen=True)
class PredicateSet:
    """A parsed predicate file: state variable names, caption rules, optional goal."""

    variables: tuple[str, ...]
    rules: tuple[CaptionRule, ...]
    goal: GoalSpec | None = None
    env: str | None = None
    source: str = "<dict>"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def captions(self) -> list[str]:
        """Distinct captions in rule order (the candidate captions of every frame)."""
        return list(dict.fromkeys(r.caption for r in self.rules))

    def states(self, vectors: np.ndarray | Sequence[Sequence[float]]) -> dict[str, np.ndarray]:
        """``(N, len(variables))`` state vectors → ``{name: (N,) values}``."""
        arr = np.asarray(vectors, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != len(self.variables):
            raise ConfigError(
                f"{self.source}: states have {arr.shape[-1]} entries but the predicate file names "
                f"{len(self.variables)} ({list(self.variables)}); fix its 'state' list"
            )
        return {name: arr[:, i] for i, name in enumerate(self.variables)}

    def label(self, vectors: np.ndarray | Sequence[Sequence[float]]) -> list[str | None]:
        """The caption of each state (the first matching rule), ``None`` when none matches."""
        states = self.states(vectors)
        n = len(next(iter(states.values())))
        out: list[str | None] = [None] * n
        free = np.ones(n, dtype=bool)
        for rule in self.rules:
            hit = rule.matches(states) & free
            for i in np.flatnonzero(hit):
                out[i] = rule.caption
            free &= ~hit
        return out

    def goal_distance(self, vectors: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Distance of each state to the goal (NaN when the file has no goal)."""
        states = self.states(vectors)
        if self.goal is None:
            return np.full(len(next(iter(states.values()))), np.nan)
        return self.goal.distance(states)


# --------------------------------------------------------------------------- parsing


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number or null, got {value!r}")
    return float(value)


def _interval(value: Any, where: str) -> tuple[float | None, float | None]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(
                f"{where}: an interval is [low, high] (null for no bound), got {value!r}"
            )
        lo, hi = _number(value[0], where), _number(value[1], where)
        if lo is None and hi is None:
            raise ConfigError(
                f"{where}: [null, null] matches everything; drop the condition instead"
            )
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"{where}: low {lo} is above high {hi}")
        return lo, hi
    v = _number(value, where)
    if v is None:
        raise ConfigError(f"{where}: expected a number or an interval [low, high], got null")
    return v, v


def _variable(key: Any, variables: Sequence[str], where: str) -> tuple[str, bool]:
    if not isinstance(key, str):
        raise ConfigError(f"{where}: condition keys must be variable names, got {key!r}")
    m = _ABS.match(key.strip())
    name, absolute = (m.group(1), True) if m else (key.strip(), False)
    if name not in variables:
        raise ConfigError(
            f"{where}: unknown state variable {name!r}; the file's 'state' names {list(variables)}"
        )
    return name, absolute


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty caption string, got {value!r}")
    return value.strip()


def _parse_variables(doc: Mapping[str, Any], source: str) -> list[str]:
    variables = doc.get("state")
    if (
        not isinstance(variables, (list, tuple))
        or not variables
        or not all(isinstance(v, str) and _NAME.match(v) for v in variables)
    ):
        raise ConfigError(
            f"{source}: 'state' must list the names of info['state'] entries, got {variables!r}"
        )
    if len(set(variables)) != len(variables):
        raise ConfigError(f"{source}: 'state' names a variable twice: {variables!r}")
    return list(variables)


def _parse_rule(r: Any, variables: Sequence[str], where: str) -> CaptionRule:
    """One ``{caption, when}`` rule of ``captions``."""
    if not isinstance(r, Mapping) or "caption" not in r:
        raise ConfigError(
            f"{where}: a rule is {{caption: ..., when: {{variable: [low, high]}}}}, got {r!r}"
        )
    bad = sorted(set(map(str, r)) - {"caption", "when"})
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {bad}; a rule has 'caption' and 'when'")
    when = r.get("when") or {}
    if not isinstance(when, Mapping):
        raise ConfigError(f"{where}: 'when' must map variables to intervals, got {when!r}")
    conds = []
    for key, value in when.items():
        name, absolute = _variable(key, variables, f"{where}.when")
        lo, hi = _interval(value, f"{where}.when.{key}")
        conds.append(Condition(name, lo, hi, absolute))
    return CaptionRule(_text(r["caption"], f"{where}.caption"), tuple(conds))


def _parse_target(
    target_raw: Any, variables: Sequence[str], where: str
) -> dict[str, tuple[float | None, float | None]]:
    if not isinstance(target_raw, Mapping) or not target_raw:
        raise ConfigError(
            f"{where}.target: map variables to a value or [low, high], got {target_raw!r}"
        )
    target: dict[str, tuple[float | None, float | None]] = {}
    for key, value in target_raw.items():
        name, absolute = _variable(key, variables, f"{where}.target")
        if absolute:
            raise ConfigError(
                f"{where}.target: use a plain variable (with a symmetric interval) not {key!r}"
            )
        target[name] = _interval(value, f"{where}.target.{key}")
    return target


def _parse_scale(scale_raw: Any, variables: Sequence[str], where: str) -> dict[str, float]:
    scale: dict[str, float] = {}
    for key, value in (scale_raw or {}).items():
        name, _ = _variable(key, variables, f"{where}.scale")
        s = _number(value, f"{where}.scale.{key}")
        if s is None or s <= 0:
            raise ConfigError(f"{where}.scale.{key}: must be a positive number, got {value!r}")
        scale[name] = s
    return scale


def _parse_goal(g: Any, variables: Sequence[str], source: str) -> GoalSpec:
    """The ``goal`` mapping: captions, target state, distance scale and near/far bands."""
    where = f"{source}: goal"
    if not isinstance(g, Mapping):
        raise ConfigError(f"{where}: must be a mapping with caption, baseline, target")
    gknown = {"caption", "baseline", "target", "scale", "near", "far", "resolution"}
    bad = sorted(set(map(str, g)) - gknown)
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {bad}; known: {sorted(gknown)}")
    for k in ("caption", "baseline", "target"):
        if k not in g:
            raise ConfigError(f"{where}: missing {k!r}")
    target = _parse_target(g["target"], variables, where)
    scale = _parse_scale(g.get("scale"), variables, where)
    resolution = _number(g.get("resolution", 0.05), f"{where}.resolution") or 0.0
    near = _number(g.get("near", resolution), f"{where}.near")
    far = _number(g.get("far", 4 * (near or resolution)), f"{where}.far")
    if near is None or far is None or near < 0 or far < near or resolution < 0:
        raise ConfigError(
            f"{where}: need 0 <= near <= far and resolution >= 0, got near={near} far={far}"
        )
    goal = GoalSpec(
        caption=_text(g["caption"], f"{where}.caption"),
        baseline=_text(g["baseline"], f"{where}.baseline"),
        target=target,
        scale=scale,
        near=near,
        far=far,
        resolution=resolution,
    )
    if goal.caption == goal.baseline:
        raise ConfigError(f"{where}: caption and baseline must differ")
    return goal


def parse_predicates(doc: Mapping[str, Any], source: str = "<dict>") -> PredicateSet:
    """A predicate document (the YAML's mapping) → :class:`PredicateSet`; errors name the place."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: a predicate file is a mapping with 'state' and 'captions'")
    known = {"env", "state", "captions", "goal"}
    unknown = sorted(set(map(str, doc)) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown}; a predicate file has {sorted(known)}"
        )
    variables = _parse_variables(doc, source)
    raw_rules = doc.get("captions")
    if not isinstance(raw_rules, (list, tuple)) or not raw_rules:
        raise ConfigError(
            f"{source}: 'captions' must be a non-empty list of {{caption, when}} rules"
        )
    rules = [_parse_rule(r, variables, f"{source}: captions[{i}]") for i, r in enumerate(raw_rules)]
    goal = _parse_goal(doc["goal"], variables, source) if doc.get("goal") is not None else None
    env = doc.get("env")
    return PredicateSet(
        variables=tuple(variables),
        rules=tuple(rules),
        goal=goal,
        env=None if env is None else str(env),
        source=source,
    )


def load_predicates(spec: str | os.PathLike) -> PredicateSet:
    """A predicate YAML file, or the name of a shipped default (``"CartPole"``, ``"MountainCar"``)."""
    text = os.fspath(spec)
    for name, doc in DEFAULT_PREDICATES.items():
        if text.lower() == name.lower():
            return parse_predicates(doc, f"<default {name} predicates>")
    p = Path(text)
    if not p.is_file():
        raise ConfigError(
            f"predicate file {text!r} does not exist; pass a YAML file or one of {sorted(DEFAULT_PREDICATES)}"
        )
    import yaml

    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{text}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_predicates(doc or {}, text)


def default_predicates(env: str) -> PredicateSet:
    """The shipped predicates of an env, by short name or id (``vlmrm/CartPole-v0``)."""
    key = env.split("/")[-1].split("-")[0].lower()
    aliases = {"mountaincarcontinuous": "mountaincar"}
    key = aliases.get(key, key)
    for name in DEFAULT_PREDICATES:
        if name.lower() == key:
            return load_predicates(name)
    raise ConfigError(
        f"no default predicates for env {env!r}; pass labels=<predicate YAML> "
        f"(defaults exist for {sorted(DEFAULT_PREDICATES)})"
    )
