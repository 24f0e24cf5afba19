"""Mechanisms as plain text: parsing, species classes, stoichiometry, conservation laws.

Text format, one elementary step per line:

```
# gas species are plain names; surface species end in '*'; '*' alone is a vacant site
A + * <=> A*            ; k1f, k1b
B2 + 2 * <=> 2 B*       ; k2f, k2b
A* + B* -> AB* + *      ; k3
```

`<=>` is reversible (two directed steps, two constants), `->` irreversible (one).
Integer coefficients are allowed (`2 B*` or `2B*`). The names after `;` are optional;
the defaults are `k{n}f` / `k{n}b` where `n` counts the steps (1, 2, ...), not the
physical lines, so comments and blank lines do not shift them.

Framework of Gusmão, Retnanto, da Cunha & Medford, "Kinetics-informed neural
networks", Catalysis Today (2022), arXiv:2011.14473: xdot = M (k * f(x)) with M the
stoichiometric matrix (one column per *directed* step) and f the mass-action part,
f_j(x) = prod_s x_s^{order_sj}, where the orders are the reactant coefficients.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import re

import numpy as np


class SpeciesKind(enum.Enum):
    """Class of a species (the c_g / c_a / c_s / vacant-site split of the KINN paper)."""

    GAS = "gas"
    ADSORBATE = "adsorbate"  # a surface species with a gas counterpart (A* with A)
    INTERMEDIATE = "intermediate"  # a surface species without one (D*)
    SITE = "site"  # the vacant site '*'

    @property
    def is_surface(self) -> bool:
        return self is not SpeciesKind.GAS


GROUPS = {
    "g": "homogeneous (gas only)",
    "d": "adsorption / desorption (gas and surface)",
    "a": "between adsorbates",
    "c": "between an adsorbate and an intermediate",
    "s": "between intermediates",
}
"""The reaction groups of the KINN paper's Table 5, by letter: what a step's species are
(gas, adsorbates, intermediates); `Mechanism.groups` holds one letter per directed step."""

# The largest stoichiometric coefficient (see `_parse_side` for why).
MAX_COEFFICIENT = 100

_NAME = r"[A-Za-z][A-Za-z0-9_]*"
_TERM = re.compile(rf"^(?:(\d+)\s*)?({_NAME}\*?|\*)$")
_CONSTANT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MechanismError(ValueError):
    """A mechanism text that cannot be parsed; the message names the line."""

    def __init__(self, message: str, *, line: int | None = None, source: str | None = None):
        where = ""
        if source is not None:
            where += f"{source}: "
        if line is not None:
            where += f"line {line}: "
        super().__init__(f"{where}{message}")
        self.line = line
        self.source = source


@dataclasses.dataclass(frozen=True)
class Step:
    """One line of a mechanism: `reactants <=> products` or `reactants -> products`.

    `reactants` and `products` are tuples of `(species, coefficient)` in the order
    written; `constants` holds one name (irreversible) or two (forward, backward).
    """

    reactants: tuple[tuple[str, int], ...]
    products: tuple[tuple[str, int], ...]
    reversible: bool
    constants: tuple[str, ...]
    line: int

    def text(self) -> str:
        def side(terms):
            return " + ".join(name if c == 1 else f"{c} {name}" for name, c in terms)

        arrow = "<=>" if self.reversible else "->"
        return f"{side(self.reactants)} {arrow} {side(self.products)} ; {', '.join(self.constants)}"


def _too_large(digits: str, token: str, lineno: int, source) -> None:
    shown = digits if len(digits) <= 24 else f"{digits[:12]}... ({len(digits)} digits)"
    raise MechanismError(
        f"coefficient {shown} of {token[:40]!r} is above {MAX_COEFFICIENT}. A reactant's "
        "coefficient is its mass-action order (the rate holds x**n, one multiplication per "
        "unit), and an elementary step involves one to three molecules; x**100 already "
        "spans 1e-100 to 1e100 for x from 0.1 to 10 (0 and inf in float32). Write the step "
        f"with coefficients up to {MAX_COEFFICIENT}, or as the elementary steps it lumps.",
        line=lineno,
        source=source,
    )


def _parse_side(text: str, lineno: int, source) -> tuple[tuple[str, int], ...]:
    text = text.strip()
    if not text:
        raise MechanismError("a side of the step is empty.", line=lineno, source=source)
    terms: dict[str, int] = {}
    order: list[str] = []
    for raw in text.split("+"):
        token = raw.strip()
        m = _TERM.match(token)
        if m is None:
            raise MechanismError(
                f"unknown token {token!r}: expected '[coefficient] NAME' (gas), "
                "'[coefficient] NAME*' (surface species) or '[coefficient] *' (vacant site).",
                line=lineno,
                source=source,
            )
        digits = (m.group(1) or "1").lstrip("0") or "0"
        # Compared as text first: int() of a 5000-digit string is refused by Python itself.
        if len(digits) > len(str(MAX_COEFFICIENT)) or int(digits) > MAX_COEFFICIENT:
            _too_large(digits, token, lineno, source)
        coeff = int(digits)
        if coeff <= 0:
            raise MechanismError(
                f"coefficient {coeff} in {token!r} must be a positive integer.",
                line=lineno,
                source=source,
            )
        name = m.group(2)
        if name not in terms:
            order.append(name)
            terms[name] = 0
        terms[name] += coeff
        if terms[name] > MAX_COEFFICIENT:
            _too_large(str(terms[name]), f"{name} (summed over the side)", lineno, source)
    return tuple((n, terms[n]) for n in order)


def _parse_line(raw: str, lineno: int, step_number: int, source) -> Step | None:
    text = raw.split("#", 1)[0].strip()
    if not text:
        return None
    if ";" in text:
        body, names_text = text.split(";", 1)
        names = tuple(n.strip() for n in names_text.split(",") if n.strip())
        if not names:
            names = None
    else:
        body, names = text, None
    if body.count("<=>") + body.replace("<=>", "").count("->") != 1:
        raise MechanismError(
            "expected exactly one arrow ('<=>' reversible or '->' irreversible) in "
            f"{body.strip()!r}.",
            line=lineno,
            source=source,
        )
    reversible = "<=>" in body
    left, right = body.split("<=>" if reversible else "->")
    reactants = _parse_side(left, lineno, source)
    products = _parse_side(right, lineno, source)
    both = {n for n, _ in reactants} & {n for n, _ in products}
    if both:
        raise MechanismError(
            f"species {sorted(both)} appear on both sides of the step; mass-action orders "
            "cannot be recovered from a net stoichiometric column. Write the step without "
            "the spectator, or split it into elementary steps.",
            line=lineno,
            source=source,
        )
    sites_left = sum(c for n, c in reactants if n.endswith("*"))
    sites_right = sum(c for n, c in products if n.endswith("*"))
    if sites_left != sites_right:
        raise MechanismError(
            f"the step does not conserve surface sites: {sites_left} on the left, "
            f"{sites_right} on the right (every surface species and every '*' holds one "
            "site). Add vacant sites '*' to balance it.",
            line=lineno,
            source=source,
        )
    expected = 2 if reversible else 1
    if names is None:
        names = (f"k{step_number}f", f"k{step_number}b") if reversible else (f"k{step_number}f",)
    if len(names) != expected:
        kind = "a reversible" if reversible else "an irreversible"
        raise MechanismError(
            f"{kind} step takes {expected} constant name(s) after ';', got {len(names)}: "
            f"{list(names)}.",
            line=lineno,
            source=source,
        )
    for n in names:
        if not _CONSTANT.match(n):
            raise MechanismError(
                f"unknown token {n!r} as a constant name: use letters, digits and '_'.",
                line=lineno,
                source=source,
            )
    return Step(reactants, products, reversible, names, lineno)


def _classify(steps: tuple[Step, ...]) -> tuple[tuple[str, ...], tuple[SpeciesKind, ...]]:
    seen: dict[str, None] = {}  # insertion-ordered set: first appearance
    for st in steps:
        for name, _ in st.reactants + st.products:
            seen.setdefault(name)
    gas = [n for n in seen if not n.endswith("*")]
    gas_set = set(gas)
    ads = [n for n in seen if n.endswith("*") and n != "*" and n[:-1] in gas_set]
    inter = [n for n in seen if n.endswith("*") and n != "*" and n[:-1] not in gas_set]
    site = ["*"] if "*" in seen else []
    names = gas + ads + inter + site
    kinds = (
        [SpeciesKind.GAS] * len(gas)
        + [SpeciesKind.ADSORBATE] * len(ads)
        + [SpeciesKind.INTERMEDIATE] * len(inter)
        + [SpeciesKind.SITE] * len(site)
    )
    return tuple(names), tuple(kinds)


def _eliminate(row: dict, pivot: dict, col: int) -> dict:
    """`row` with column `col` cancelled by `pivot` (which holds `col`), in integers,
    divided by the gcd of its entries so that they stay small."""
    g = math.gcd(row[col], pivot[col])
    fr, fp = pivot[col] // g, row[col] // g
    out = {c: fr * v for c, v in row.items()}
    for c, v in pivot.items():
        w = out.get(c, 0) - fp * v
        if w:
            out[c] = w
        else:
            out.pop(c, None)
    g = math.gcd(*out.values()) if out else 1
    return {c: v // g for c, v in out.items()} if g > 1 else out


class _Echelon:
    """Reduced row echelon form over the integers (Python ints, exact), built one sparse
    row at a time.

    A pivot row holds its pivot column and non-pivot columns only, so reducing a new row
    is one pass over its entries. The new pivot is the column of the reduced row held by
    the fewest pivot rows: a species seen for the first time costs no update at all, so
    sparse stoichiometry stays sparse (1000 steps in a fraction of a second; sympy's
    rational nullspace with a rank test per law took 90 s for 160 independent steps,
    benchmarks/kinetics_conservation.py)."""

    def __init__(self):
        self.rows: dict[int, dict] = {}  # pivot column -> row {column: coefficient}
        self.holders: dict[int, set] = {}  # non-pivot column -> pivots whose rows hold it

    def _set(self, p: int, row: dict) -> None:
        old = self.rows.get(p, {})
        for c in old.keys() - row.keys():
            self.holders[c].discard(p)
        for c in row.keys() - old.keys() - {p}:
            self.holders.setdefault(c, set()).add(p)
        self.rows[p] = row

    def add(self, row: dict) -> None:
        for c in [c for c in row if c in self.rows]:
            row = _eliminate(row, self.rows[c], c)
        if not row:
            return
        p = min(row, key=lambda c: (len(self.holders.get(c, ())), c))
        for q in list(self.holders.get(p, ())):
            self._set(q, _eliminate(self.rows[q], row, p))
        self.holders.pop(p, None)
        self._set(p, row)


def _primitive(law: dict) -> dict:
    """The integer vector divided by its gcd, first nonzero entry positive."""
    g = math.gcd(*law.values())
    if law[min(law)] < 0:
        g = -g
    return {c: v // g for c, v in law.items()}


def _integer_left_null_space(m: np.ndarray, first: np.ndarray | None = None) -> np.ndarray:
    """Integer basis of {c : c^T M = 0}, exact, with `first` (if in it) as its first row.

    Row-reduces M^T over the integers (`_Echelon`); each non-pivot species f gives the law
    with f's coefficient set and the pivot species solved for, so the laws are independent
    by construction and span the whole left null space."""
    n = m.shape[0]
    ech = _Echelon()
    seen = set()
    for j in range(m.shape[1]):
        col = {int(i): int(m[i, j]) for i in np.flatnonzero(m[:, j])}
        key = tuple(col.items())
        if key in seen:  # a reversible step's backward column adds nothing
            continue
        seen.add(key)
        seen.add(tuple((i, -v) for i, v in key))
        ech.add(col)
    laws = {}
    for f in (c for c in range(n) if c not in ech.rows):
        holders = ech.holders.get(f, ())
        d = math.lcm(*(ech.rows[p][p] for p in holders)) if holders else 1
        law = {f: d}
        for p in holders:
            law[p] = -ech.rows[p][f] * (d // ech.rows[p][p])
        laws[f] = _primitive(law)
    ordered = list(laws.values())
    if first is not None and np.any(first) and not np.any(first @ m):
        # The laws' free coordinates are multiples of unit vectors, so `first` replaces
        # any law whose free species it holds and the rows still form a basis.
        f = next(f for f in laws if first[f])
        ordered = [_primitive({i: int(v) for i, v in enumerate(first) if v})] + [
            law for g, law in laws.items() if g != f
        ]
    big = max((abs(v) for law in ordered for v in law.values()), default=0)
    if big >= 2**62:
        raise MechanismError(
            f"a conservation law has a coefficient of {len(str(big))} digits, beyond a 64-bit "
            "integer; check the stoichiometric coefficients."
        )
    out = np.zeros((len(ordered), n), dtype=np.int64)
    for i, law in enumerate(ordered):
        for c, v in law.items():
            out[i, c] = v
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Mechanism:
    """A microkinetic mechanism: species, directed steps, stoichiometry and orders.

    Build one with `Mechanism.from_text` or `Mechanism.from_file`. It is plain
    structure (numpy arrays, names) that compares and hashes by its parsed steps, so it
    can sit in a model pytree as a static leaf, and two mechanisms parsed from the same
    text share compiled solves.

    **Attributes:**

    - `species`: names, ordered gas, adsorbates, intermediates, then `'*'`.
    - `kinds`: the `SpeciesKind` of each species.
    - `steps`: the parsed lines (`Step`).
    - `constants`: one name per directed step (column of `stoichiometry`).
    - `stoichiometry`: int array `(n_species, n_reactions)`, products minus reactants.
    - `orders`: int array `(n_species, n_reactions)`, reactant coefficients
      (mass-action orders).
    - `conservation`: int array `(n_laws, n_species)`, a basis of the left null space of
      `stoichiometry` (`conservation @ stoichiometry == 0`); the site balance (1 on
      every surface species and on `'*'`) is its first row when there is a surface.
    - `groups`: reaction group (`'g'`, `'d'`, `'a'`, `'c'`, `'s'`, see `GROUPS`) of
      each directed step.
    """

    species: tuple[str, ...]
    kinds: tuple[SpeciesKind, ...]
    steps: tuple[Step, ...]
    constants: tuple[str, ...]
    stoichiometry: np.ndarray
    orders: np.ndarray
    conservation: np.ndarray
    groups: tuple[str, ...]

    # The arrays (stoichiometry, orders, conservation) are derived from these.
    def _key(self):
        return (self.species, self.kinds, self.steps, self.constants, self.groups)

    def __eq__(self, other):
        if not isinstance(other, Mechanism):
            return NotImplemented
        return self is other or self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    # ------------------------------------------------------------------ building

    @classmethod
    def from_text(cls, text: str, *, source: str | None = None) -> Mechanism:
        """Parses a mechanism from text (format in the module docstring).

        **Arguments:**

        - `text`: the mechanism, one elementary step per line.
        - `source`: optional name (a file path) used in error messages.

        **Returns:**

        A `Mechanism`. Raises `MechanismError` (a `ValueError`) naming the line on an
        unknown token, a step that does not conserve surface sites, a species on both
        sides, a duplicate constant name or an empty mechanism.
        """
        if not isinstance(text, str):
            raise TypeError(
                f"Mechanism.from_text: `text` must be a str, got {type(text).__name__}."
            )
        steps: list[Step] = []
        used: dict[str, int] = {}
        for lineno, raw in enumerate(text.splitlines(), start=1):
            st = _parse_line(raw, lineno, len(steps) + 1, source)
            if st is None:
                continue
            for name in st.constants:
                if name in used:
                    raise MechanismError(
                        f"duplicate constant name {name!r} (first used on line {used[name]}).",
                        line=lineno,
                        source=source,
                    )
                used[name] = lineno
            if len(set(st.constants)) != len(st.constants):
                raise MechanismError(
                    f"duplicate constant name {st.constants[0]!r} within one step.",
                    line=lineno,
                    source=source,
                )
            steps.append(st)
        if not steps:
            raise MechanismError(
                "empty mechanism: no step found (only blank lines or comments).", source=source
            )
        return cls._build(tuple(steps))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Mechanism:
        """Reads a mechanism text file (see `from_text`); errors name the file and line."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise MechanismError(f"cannot read the file: {e.strerror or e}.", source=path) from e
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise MechanismError(
                f"byte {e.start} ({raw[e.start : e.start + 1]!r}) is not UTF-8 text; save the "
                "file as UTF-8 (plain ASCII names and arrows suffice).",
                line=raw.count(b"\n", 0, e.start) + 1,
                source=path,
            ) from None
        return cls.from_text(text, source=path)

    @classmethod
    def _build(cls, steps: tuple[Step, ...]) -> Mechanism:
        species, kinds = _classify(steps)
        index = {n: i for i, n in enumerate(species)}
        columns, orders, names, groups = [], [], [], []
        for st in steps:
            fwd = np.zeros(len(species), np.int64)
            ordf = np.zeros(len(species), np.int64)
            ordb = np.zeros(len(species), np.int64)
            for n, c in st.reactants:
                fwd[index[n]] -= c
                ordf[index[n]] += c
            for n, c in st.products:
                fwd[index[n]] += c
                ordb[index[n]] += c
            group = _group([kinds[index[n]] for n, _ in st.reactants + st.products])
            columns.append(fwd)
            orders.append(ordf)
            names.append(st.constants[0])
            groups.append(group)
            if st.reversible:
                columns.append(-fwd)
                orders.append(ordb)
                names.append(st.constants[1])
                groups.append(group)
        m = np.stack(columns, axis=1)
        surface = np.array([k.is_surface for k in kinds], np.int64)
        conservation = _integer_left_null_space(m, surface if surface.any() else None)
        return cls(
            species=species,
            kinds=kinds,
            steps=steps,
            constants=tuple(names),
            stoichiometry=m,
            orders=np.stack(orders, axis=1),
            conservation=conservation,
            groups=tuple(groups),
        )

    # ------------------------------------------------------------------ views

    def to_text(self) -> str:
        """The mechanism as text with every constant named; `from_text` reads it back."""
        return "\n".join(st.text() for st in self.steps) + "\n"

    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def n_reactions(self) -> int:
        """Number of directed steps (columns of `stoichiometry`)."""
        return len(self.constants)

    def index(self, name: str) -> int:
        """Position of species `name` in `species` (ValueError naming the known ones)."""
        try:
            return self.species.index(name)
        except ValueError:
            raise ValueError(
                f"unknown species {name!r}; the mechanism has {list(self.species)}."
            ) from None

    def constant_index(self, name: str) -> int:
        try:
            return self.constants.index(name)
        except ValueError:
            raise ValueError(
                f"unknown rate constant {name!r}; the mechanism has {list(self.constants)}."
            ) from None

    @property
    def surface(self) -> np.ndarray:
        """Boolean mask of surface species (adsorbates, intermediates and '*')."""
        return np.array([k.is_surface for k in self.kinds])

    @property
    def site_balance(self) -> np.ndarray | None:
        """The site-balance row (1 on surface species), or None without a surface."""
        s = self.surface.astype(np.int64)
        return s if s.any() else None

    def reactant_table(self) -> np.ndarray:
        """`(n_reactions, max_order)` species indices, repeated by order, padded with
        `n_species` (an index that points at a constant 1)."""
        width = max(1, int(self.orders.sum(axis=0).max()))
        out = np.full((self.n_reactions, width), self.n_species, np.int64)
        for j in range(self.n_reactions):
            idx = np.repeat(np.arange(self.n_species), self.orders[:, j])
            out[j, : len(idx)] = idx
        return out

    def __repr__(self) -> str:
        return (
            f"Mechanism({len(self.steps)} steps, {self.n_reactions} directed, "
            f"species={list(self.species)})"
        )

    def same_as(self, other: Mechanism) -> bool:
        """Structural equality (species, stoichiometry, orders and constant names)."""
        return (
            self.species == other.species
            and self.kinds == other.kinds
            and self.constants == other.constants
            and np.array_equal(self.stoichiometry, other.stoichiometry)
            and np.array_equal(self.orders, other.orders)
        )


def _group(kinds: list[SpeciesKind]) -> str:
    has_gas = SpeciesKind.GAS in kinds
    surf = [k for k in kinds if k in (SpeciesKind.ADSORBATE, SpeciesKind.INTERMEDIATE)]
    if has_gas:
        return "d" if any(k.is_surface for k in kinds) else "g"
    if surf and all(k is SpeciesKind.ADSORBATE for k in surf):
        return "a"
    if surf and all(k is SpeciesKind.INTERMEDIATE for k in surf):
        return "s"
    return "c"
