"""Mechanism text format: parsing, classes, stoichiometry, conservation laws, errors."""

import numpy as np
import pytest

from sciml.experiments.kinetics import BENCHMARKS
from sciml.kinetics import Mechanism, MechanismError, SpeciesKind


EXAMPLE = """\
# gas species are plain names; surface species end in '*'; '*' alone is a vacant site
A + * <=> A*            ; k1f, k1b
B2 + 2 * <=> 2 B*       ; k2f, k2b
A* + B* -> AB* + *      ; k3
"""


def test_example_from_issue():
    m = Mechanism.from_text(EXAMPLE)
    assert m.species == ("A", "B2", "A*", "B*", "AB*", "*")
    assert m.kinds == (
        SpeciesKind.GAS,
        SpeciesKind.GAS,
        SpeciesKind.ADSORBATE,
        SpeciesKind.INTERMEDIATE,  # B* has no gas B (the gas is B2)
        SpeciesKind.INTERMEDIATE,
        SpeciesKind.SITE,
    )
    assert m.constants == ("k1f", "k1b", "k2f", "k2b", "k3")
    # columns: A+*->A*, A*->A+*, B2+2*->2B*, 2B*->B2+2*, A*+B*->AB*+*
    expected = np.array(
        [
            [-1, 1, 0, 0, 0],
            [0, 0, -1, 1, 0],
            [1, -1, 0, 0, -1],
            [0, 0, 2, -2, -1],
            [0, 0, 0, 0, 1],
            [-1, 1, -2, 2, 1],
        ]
    )
    np.testing.assert_array_equal(m.stoichiometry, expected)
    orders = np.array(
        [
            [1, 0, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 1, 0, 0, 1],
            [0, 0, 0, 2, 1],
            [0, 0, 0, 0, 0],
            [1, 0, 2, 0, 0],
        ]
    )
    np.testing.assert_array_equal(m.orders, orders)
    assert m.groups == ("d", "d", "d", "d", "c")


def _check_laws(m, expected_count):
    c = m.conservation
    assert c.dtype.kind == "i"
    np.testing.assert_array_equal(c @ m.stoichiometry, 0)
    assert np.linalg.matrix_rank(c) == c.shape[0] == expected_count
    assert c.shape[0] == m.n_species - np.linalg.matrix_rank(m.stoichiometry)


def test_conservation_laws_of_known_mechanisms():
    # g: A + B <=> C conserves A + C and B + C.
    g = BENCHMARKS["g"].mechanism
    _check_laws(g, 2)
    for law in ([1, 0, 1], [0, 1, 1]):
        assert np.linalg.matrix_rank(np.vstack([g.conservation, law])) == 2
    for name, n_laws in (("da", 3), ("dc", 3), ("dcs", 3)):
        m = BENCHMARKS[name].mechanism
        _check_laws(m, n_laws)
        np.testing.assert_array_equal(m.conservation[0], m.surface.astype(int))
    # da: A atoms (A, A*, C, C*) and B atoms (B, B*, C, C*) are conserved.
    da = BENCHMARKS["da"].mechanism
    for law in ([1, 0, 1, 1, 0, 1, 0], [0, 1, 1, 0, 1, 1, 0]):
        assert np.linalg.matrix_rank(np.vstack([da.conservation, law])) == 3
    # dc: D* is half a B, and C (= A* + D*) carries one D.
    dc = BENCHMARKS["dc"].mechanism
    law = np.zeros(dc.n_species)
    for s, v in {"A": 1, "C": 1, "A*": 1, "C*": 1}.items():
        law[dc.index(s)] = v
    assert np.linalg.matrix_rank(np.vstack([dc.conservation, law])) == 3
    law = np.zeros(dc.n_species)
    for s, v in {"B": 2, "C": 1, "B*": 2, "C*": 1, "D*": 1}.items():
        law[dc.index(s)] = v
    assert np.linalg.matrix_rank(np.vstack([dc.conservation, law])) == 3


def test_benchmark_groups_match_paper():
    assert BENCHMARKS["da"].mechanism.groups == tuple("dddddd") + ("a", "a")
    assert BENCHMARKS["dc"].mechanism.groups == tuple("dddddd") + tuple("cccc")
    # The paper's dcs group c is columns 7-10 and 13-14; s is 11-12.
    assert BENCHMARKS["dcs"].mechanism.groups == tuple("dddddd") + tuple("cccc") + (
        "s",
        "s",
        "c",
        "c",
    )
    assert BENCHMARKS["g"].mechanism.groups == ("g", "g")


@pytest.mark.parametrize("text", [EXAMPLE] + [b.text for b in BENCHMARKS.values()])
def test_round_trip(text):
    m = Mechanism.from_text(text)
    back = Mechanism.from_text(m.to_text())
    assert back.same_as(m)
    np.testing.assert_array_equal(back.conservation, m.conservation)
    assert back.to_text() == m.to_text()


def test_default_names_and_coefficients(tmp_path):
    m = Mechanism.from_text("# comment\n\nA + * <=> A*\n2A* -> A2 + 2*\n")
    assert m.constants == ("k1f", "k1b", "k2f")
    j = m.constant_index("k2f")
    assert m.orders[m.index("A*"), j] == 2
    p = tmp_path / "m.txt"
    p.write_text(m.to_text())
    assert Mechanism.from_file(p).same_as(m)


@pytest.mark.parametrize(
    "text, line, match",
    [
        ("A + * <=> A*\nA + @ -> B\n", 2, "unknown token '@'"),
        ("A + * <=> A*\n\nA* -> B\n", 3, "does not conserve surface sites"),
        ("A + * <=> A*\nA* + B -> A* + C\n", 2, "both sides"),
        ("A + * <=> A* ; k1, k2\nB + * <=> B* ; k3, k1\n", 2, "duplicate constant name 'k1'"),
        ("A + * <=> A* ; k1\n", 1, "takes 2 constant"),
        ("A + * = A*\n", 1, "arrow"),
        ("A + <=> A*\n", 1, "unknown token ''"),
        ("A -> B ; 1bad\n", 1, "unknown token '1bad'"),
    ],
)
def test_parse_errors_name_the_line(text, line, match):
    with pytest.raises(MechanismError, match=match) as info:
        Mechanism.from_text(text)
    assert info.value.line == line
    assert f"line {line}:" in str(info.value)


def test_empty_mechanism(tmp_path):
    with pytest.raises(MechanismError, match="empty mechanism"):
        Mechanism.from_text("# nothing\n\n")
    p = tmp_path / "empty.txt"
    p.write_text("")
    with pytest.raises(ValueError, match="empty.txt"):
        Mechanism.from_file(p)


def test_coefficients_are_bounded():
    # A reactant's coefficient is its mass-action order: 100 is read, 101 and the issue's
    # 1000000 (which hung the CLI) and 99999999999999999999 (a raw OverflowError) are not.
    m = Mechanism.from_text("100 A -> B ; k\n")
    assert m.orders[m.index("A"), 0] == 100
    assert m.reactant_table().shape == (1, 100)
    for text in ("101 A -> B", "1000000 A -> B ; k", "99999999999999999999 A -> B"):
        with pytest.raises(MechanismError, match="is above 100") as info:
            Mechanism.from_text(text)
        assert info.value.line == 1
    with pytest.raises(MechanismError, match="'B .summed over the side.' is above 100"):
        Mechanism.from_text("A -> 50 B + 51 B")


def _molecule(c):
    return "M" + "".join(f"{e}{n}" for e, n in zip("CHO", c))


def _balanced_mechanism(n_steps, seed):
    """Random steps between molecules C_c H_h O_o, gas and adsorbed, each conserving every
    element and the sites (association in the gas, adsorption, surface association);
    returns the text and each species' (C, H, O) count."""
    rng = np.random.default_rng(seed)
    lines, atoms = [], {"*": (0, 0, 0)}
    while len(lines) < n_steps:
        x, y = (tuple(int(v) for v in rng.integers(0, 4, 3)) for _ in range(2))
        if not any(x) or not any(y):
            continue
        z = tuple(a + b for a, b in zip(x, y))
        kind = int(rng.integers(3))
        if kind == 0:
            lines.append(f"{_molecule(x)} + {_molecule(y)} <=> {_molecule(z)}")
        elif kind == 1:
            lines.append(f"{_molecule(x)} + * <=> {_molecule(x)}*")
        else:
            lines.append(f"{_molecule(x)}* + {_molecule(y)}* -> {_molecule(z)}* + *")
        for c in (x, y, z):
            atoms[_molecule(c)] = atoms[_molecule(c) + "*"] = c
    return "\n".join(lines), atoms


def _in_span(basis, vector):
    return np.linalg.matrix_rank(np.vstack([basis, vector])) == np.linalg.matrix_rank(basis)


@pytest.mark.parametrize("n_steps", [40, 1000])
def test_conservation_laws_of_a_random_mechanism(n_steps):
    # Independent truth: l . S = 0 in exact integers; as many independent laws as the
    # left null space's dimension (n_species - rank S); the element balances, known from
    # the construction, and the site balance lie in their span.
    text, atoms = _balanced_mechanism(n_steps, seed=n_steps)
    m = Mechanism.from_text(text)
    c = m.conservation
    assert c.dtype == np.int64
    # int64 holds the products exactly here: |entries| <= 1000 and <= 2000 terms.
    assert np.abs(c).max() <= 1000
    assert not np.any(c @ m.stoichiometry)
    s = m.stoichiometry
    rank_s = np.linalg.matrix_rank((s @ s.T).astype(np.float64))  # = rank S, smaller
    assert np.linalg.matrix_rank(c.astype(np.float64)) == c.shape[0] == m.n_species - rank_s
    np.testing.assert_array_equal(c[0], m.surface.astype(np.int64))
    for e in range(3):
        assert _in_span(c, [atoms[s][e] for s in m.species])


def test_conservation_laws_match_sympy():
    sympy = pytest.importorskip("sympy")
    m = Mechanism.from_text(_balanced_mechanism(25, seed=3)[0])
    reference = sympy.Matrix(m.stoichiometry.T.tolist()).nullspace()
    both = sympy.Matrix.vstack(sympy.Matrix(m.conservation.tolist()), *[v.T for v in reference])
    assert both.rank() == len(reference) == m.conservation.shape[0]


def test_conservation_laws_of_independent_steps():
    # The issue's growth case (sympy took 41 s at 160 steps): A_i -> B_i conserves
    # exactly A_i + B_i for each i.
    m = Mechanism.from_text("\n".join(f"A{i} -> B{i}" for i in range(1000)))
    laws = {tuple(np.flatnonzero(law)): tuple(law[law != 0]) for law in m.conservation}
    assert laws == {(m.index(f"A{i}"), m.index(f"B{i}")): (1, 1) for i in range(1000)}
