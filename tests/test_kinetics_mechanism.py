"""Mechanism text format: parsing, classes, stoichiometry, conservation laws, errors."""

import numpy as np
import pytest

from sciml.kinetics import BENCHMARKS, Mechanism, MechanismError, SpeciesKind


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
