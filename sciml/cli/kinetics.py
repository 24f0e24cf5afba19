"""`sciml kinetics simulate|fit`: microkinetic models from the command line.

```
sciml kinetics simulate --mechanism M.txt --rates R.json --initial I.csv --t-end T \
    [--points N] --out S.csv [--force]
sciml kinetics fit --mechanism M.txt --data D.csv --initial I.csv \
    [--method direct|esmda|kinn] [--seed S] --out DIR [--force]
```

- `M.txt`: the mechanism, one step per line (see `sciml.kinetics.Mechanism`).
- `R.json`: `{"<constant name>": k, ...}` for every constant of the mechanism.
- `I.csv`: a column `experiment` and one column per species: the full initial state.
- `D.csv`: columns `experiment`, `t` and any subset of species; a blank cell is "not
  observed". Measured values may be negative (noise around zero); times increase row by
  row within an experiment.
- `fit` writes `DIR/estimates.json` (`{"<constant>": {"value": k, "log_std": std of ln k}}`),
  `DIR/parity.png` (fitted against observed) and `DIR/report.md`.

Every input file and `--out` are checked before any computation; errors name the file,
the row and the column. An output never replaces an input, and replaces an earlier result
only with `--force`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from ._validators import positive_float, prng_seed


class InputError(ValueError):
    """A bad input file or option (exit status 2)."""


class _Row(int):
    """A data row's number (1 = the first row below the header) that also knows the
    file line it was read from (blank lines are skipped, so the two can differ)."""

    line: int

    def __new__(cls, row, line):
        self = super().__new__(cls, row)
        self.line = line
        return self


def _where(path, row=None, column=None):
    out = str(path)
    if row is not None:
        out += f", row {row} (line {getattr(row, 'line', row + 1)})"
    if column is not None:
        out += f", column {column!r}"
    return out


def _read_csv(path) -> tuple[list[str], list[tuple[_Row, list[str]]]]:
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which would
        # otherwise become part of the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows, lines = [], []
            for row in reader:
                if any(c.strip() for c in row):
                    rows.append(row)
                    lines.append(reader.line_num)
    except OSError as e:
        raise InputError(f"{path}: cannot read the file: {e.strerror or e}.") from None
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: byte {e.start} is not UTF-8 text; save the file as UTF-8 CSV."
        ) from None
    except csv.Error as e:
        raise InputError(
            f"{path}, line {reader.line_num}: not readable as CSV ({e}); save it as plain "
            "comma-separated text."
        ) from None
    if not rows:
        raise InputError(f"{path}: the file is empty; expected a header row and data rows.")
    header = [c.strip() for c in rows[0]]
    if header[0].startswith("#"):
        raise InputError(
            f"{path}, line {lines[0]}: the first row {','.join(rows[0])!r} is a comment; the "
            "first non-blank row must be the header (column names). Delete the comment."
        )
    if len(header) == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs")):
            if sep in header[0]:
                raise InputError(
                    f"{path}: the header {header[0]!r} is one column: the file is separated "
                    f"by {name}; save it as comma-separated CSV."
                )
    for i, name in enumerate(header):
        if not name:
            raise InputError(f"{path}: the header has an empty column name at position {i + 1}.")
    dupes = {c for c in header if header.count(c) > 1}
    if dupes:
        raise InputError(f"{path}: duplicate column(s) {sorted(dupes)} in the header.")
    body = rows[1:]
    if not body:
        raise InputError(f"{path}: the file has a header but no data rows.")
    for r, row in _numbered(body, lines[1:]):
        if len(row) != len(header):
            raise InputError(
                f"{_where(path, r)}: has {len(row)} cells but the header has {len(header)}."
            )
    return header, _numbered([[c.strip() for c in row] for row in body], lines[1:])


def _numbered(rows, lines):
    return [(_Row(i, line), row) for i, (row, line) in enumerate(zip(rows, lines), start=1)]


def _number(text, path, row, column, *, blank_ok=False, nonneg=True):
    if text == "":
        if blank_ok:
            return math.nan
        raise InputError(f"{_where(path, row, column)}: the cell is empty; a number is required.")
    try:
        if "_" in text:  # float() takes Python's digit separators: '1_0' would read as 10
            raise ValueError
        v = float(text)
    except ValueError:
        raise InputError(f"{_where(path, row, column)}: {text[:40]!r} is not a number.") from None
    if not math.isfinite(v):
        fix = " (leave the cell blank where nothing was observed)" if blank_ok else ""
        raise InputError(f"{_where(path, row, column)}: {text[:40]!r} is not a finite number{fix}.")
    if nonneg and v < 0:
        what = "time" if column == "t" else "concentration"
        raise InputError(f"{_where(path, row, column)}: negative {what} {v}; values must be >= 0.")
    return v


def _check_species_columns(path, header, mechanism, *, required_all):
    extra = [c for c in header if c not in ("experiment", "t") and c not in mechanism.species]
    if extra:
        raise InputError(
            f"{path}: column(s) {extra} are not species of the mechanism; its species are "
            f"{list(mechanism.species)}."
        )
    if required_all:
        missing = [s for s in mechanism.species if s not in header]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {missing}: the initial state needs one column per "
                f"species {list(mechanism.species)}."
            )


def read_initial(path, mechanism) -> tuple[list[str], np.ndarray]:
    """Reads I.csv: experiment names and `(n_exp, n_species)` initial states."""
    header, body = _read_csv(path)
    if "experiment" not in header:
        raise InputError(f"{path}: missing column 'experiment' (one row per experiment).")
    _check_species_columns(path, [c for c in header if c != "t"], mechanism, required_all=True)
    if "t" in header:
        raise InputError(f"{path}: unexpected column 't'; the initial states hold no time.")
    names, states = [], []
    col = {c: header.index(c) for c in header}
    for r, row in body:
        name = row[col["experiment"]]
        if not name:
            raise InputError(f"{_where(path, r, 'experiment')}: the experiment name is empty.")
        if name in names:
            raise InputError(f"{_where(path, r, 'experiment')}: experiment {name!r} appears twice.")
        x = [_number(row[col[s]], path, r, s) for s in mechanism.species]
        surf = [v for v, k in zip(x, mechanism.kinds) if k.is_surface]
        if surf and abs(sum(surf) - 1.0) > 1e-6:
            cols = [s for s, k in zip(mechanism.species, mechanism.kinds) if k.is_surface]
            raise InputError(
                f"{_where(path, r)}: the initial state breaks the site balance: the surface "
                f"columns {cols} (vacant site '*' included) sum to {sum(surf):.6g}, not 1."
            )
        names.append(name)
        states.append(x)
    return names, np.asarray(states, np.float64)


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _read_json(path):
    """The JSON object in `path`, refusing what json.load would take silently (a repeated
    key: the last one wins) or answer with a traceback (bytes that are not UTF-8, an
    integer of more than 4300 digits, deep nesting)."""
    try:
        raw = pathlib.Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the file: {e.strerror or e}.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InputError(
            f"{path}, line {line}: byte {e.start} ({raw[e.start : e.start + 1]!r}) is not "
            "UTF-8 text; save the file as UTF-8."
        ) from None
    try:
        # Integers read as floats: the values are rate constants, and a 5000-digit integer
        # then reads as inf (refused by name below) instead of exceeding Python's limit.
        return json.loads(text, object_pairs_hook=_unique_keys, parse_int=float)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}."
        ) from None
    except _DuplicateKey as e:
        raise InputError(
            f"{path}: the key {e.args[0]!r} appears twice in one object; JSON keeps only the "
            "last, so say which value you mean and delete the other."
        ) from None
    except RecursionError:
        raise InputError(
            f"{path}: nested too deeply to read; expected a flat object "
            '{"constant name": value, ...}.'
        ) from None


def read_rates(path, mechanism) -> np.ndarray:
    """Reads R.json: ln k in the order of `mechanism.constants`."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise InputError(f'{path}: expected an object {{"constant name": value, ...}}.')
    unknown = [k for k in data if k not in mechanism.constants]
    if unknown:
        raise InputError(
            f"{path}: unknown constant(s) {unknown}; the mechanism has {list(mechanism.constants)}."
        )
    missing = [k for k in mechanism.constants if k not in data]
    if missing:
        raise InputError(f"{path}: missing value(s) for constant(s) {missing}.")
    out = []
    for k in mechanism.constants:
        v = data[k]
        if isinstance(v, dict) and "value" in v:  # estimates.json works as rates too
            v = v["value"]
        if isinstance(v, bool) or not isinstance(v, float) or not math.isfinite(v) or v <= 0:
            shown = repr(v)[:40]
            why = (
                " (beyond 1.8e308, the largest double-precision number)"
                if isinstance(v, float) and math.isinf(v)
                else ""
            )
            raise InputError(
                f"{path}: constant {k!r} must be a positive finite number, got {shown}{why}; "
                f'write it as "{k}": 2.5 or "{k}": 1e-3.'
            )
        out.append(math.log(v))
    return np.asarray(out)


def read_data(path, mechanism, experiments):
    """Reads D.csv: `(t, values, species)` padded to a common number of rows."""
    header, body = _read_csv(path)
    for c in ("experiment", "t"):
        if c not in header:
            raise InputError(
                f"{path}: missing column {c!r}; D.csv needs 'experiment', 't' and species."
            )
    _check_species_columns(path, header, mechanism, required_all=False)
    species = [c for c in header if c not in ("experiment", "t")]
    if not species:
        raise InputError(f"{path}: no species column; add at least one observed species.")
    col = {c: header.index(c) for c in header}
    per = {e: [] for e in experiments}
    for r, row in body:
        e = row[col["experiment"]]
        if e not in per:
            raise InputError(
                f"{_where(path, r, 'experiment')}: experiment {e!r} has no initial state in the "
                f"initial-state file (known: {experiments})."
            )
        t = _number(row[col["t"]], path, r, "t")
        if per[e] and t <= per[e][-1][0]:
            before, prev = per[e][-1][0], per[e][-1][2]
            raise InputError(
                f"{_where(path, r, 't')}: time {t:g} of experiment {e!r} is not after its "
                f"previous row's time {before:g} (row {prev}); an experiment's times must "
                "increase row by row: sort its rows by time and merge repeated times."
            )
        # Measured values may be negative: noise around a concentration near zero.
        vals = [_number(row[col[s]], path, r, s, blank_ok=True, nonneg=False) for s in species]
        if all(math.isnan(v) for v in vals):
            raise InputError(
                f"{_where(path, r)}: no observed value (every species cell {species} is "
                "blank); fill in what was measured at this time or delete the row."
            )
        per[e].append((t, vals, r))
    used = [e for e in experiments if per[e]]
    if not used:
        raise InputError(f"{path}: no data row.")
    n = max(len(per[e]) for e in used) + 1
    ts = np.zeros((len(experiments), n))
    values = np.full((len(experiments), n, len(species)), np.nan)
    for i, e in enumerate(experiments):
        # Row 0 is t = 0 (the initial state), never observed: the solve starts there.
        for j, (t, vals, _) in enumerate(per[e], start=1):
            ts[i, j] = t
            values[i, j] = vals
        ts[i, len(per[e]) + 1 :] = per[e][-1][0] if per[e] else 0.0
    return ts, values, species


# What each estimator is, for the report; the default first.
_METHODS = {
    "direct": "least squares of the ODE solution against the data, from 4 first guesses",
    "esmda": "ensemble smoother with multiple data assimilation (400 members)",
    "kinn": "kinetics-informed neural network surrogate, checked against the mechanism",
}
_DEFAULT_WHY = (
    "the default, as the measurements favour it: its errors and std of ln k sit at the "
    "Cramér-Rao bound in under a minute, where KINN took minutes and reported a std "
    "3.5-17x wider (benchmarks/RESULTS.md); `--method esmda` and `--method kinn` run the "
    "others"
)
_FIT_OUTPUTS = ("estimates.json", "parity.png", "report.md")


def _parser(prog):
    p = argparse.ArgumentParser(prog=prog, description="Microkinetic models: simulate and fit.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    s = sub.add_parser("simulate", help="integrate a mechanism from initial states")
    s.add_argument("--mechanism", required=True, help="mechanism text file (M.txt)")
    s.add_argument("--rates", required=True, help="JSON {constant: k} (R.json)")
    s.add_argument("--initial", required=True, help="CSV of initial states (I.csv)")
    s.add_argument("--t-end", required=True, type=positive_float, help="final time")
    s.add_argument("--points", type=_points, default=101, help="output times (default 101)")
    s.add_argument("--out", required=True, help="output CSV (S.csv)")
    s.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    f = sub.add_parser("fit", help="estimate rate constants from transient data")
    f.add_argument("--mechanism", required=True, help="mechanism text file (M.txt)")
    f.add_argument("--data", required=True, help="CSV with experiment, t, species (D.csv)")
    f.add_argument("--initial", required=True, help="CSV of initial states (I.csv)")
    f.add_argument(
        "--method",
        choices=tuple(_METHODS),
        default=None,
        help="estimator: 'direct' (the default; least squares of the ODE solution, at the "
        "Cramér-Rao bound on the benchmarks in under a minute), 'esmda' (ensemble smoother) or "
        "'kinn' (neural surrogate, minutes, wider std)",
    )
    f.add_argument("--seed", type=prng_seed, default=0, help="PRNG seed in [0, 2**32)")
    f.add_argument(
        "--semi-quantitative",
        nargs="*",
        default=[],
        metavar="SPECIES",
        help="observed species whose signal has an unknown scale (fitted)",
    )
    f.add_argument("--noise-std", type=positive_float, default=None, help="known noise std")
    f.add_argument(
        "--polish",
        nargs="?",
        const="always",
        default=None,
        choices=("auto", "always", "never"),
        help="(kinn) refine the surrogate's constants by the ODE-constrained fit, started from "
        "the surrogate's estimate and from the first guess, and report the better fit: "
        "'auto' (the default) when the mechanism solved at the surrogate's constants misfits "
        "the data or leaves a constant unidentified, 'always' (also plain --polish) or 'never'",
    )
    f.add_argument("--out", required=True, help="output directory")
    f.add_argument("--force", action="store_true", help="overwrite a previous result in --out")
    return p


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_writable(place: pathlib.Path) -> None:
    """Refuses an output place that cannot be created or written, creating nothing: the
    nearest existing ancestor must be a directory that takes a file."""
    base = place.absolute()
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise InputError(
            f"--out: {base} is a file, so {place} cannot be created under it; name a path "
            "inside a directory."
        )
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        raise InputError(
            f"--out: cannot write in {base} ({e.strerror or e}); name a place you can write to."
        ) from None


def _check_not_input(target: pathlib.Path, args) -> None:
    for flag in ("mechanism", "rates", "initial", "data"):
        path = getattr(args, flag, None)
        if path is not None and _same_file(target, path):
            raise InputError(
                f"--out {args.out}: {target} is the --{flag} input file, which the results "
                "would overwrite; name another place for them (--force never overwrites an "
                "input)."
            )


def _check_out_file(args) -> pathlib.Path:
    """`--out` of `simulate`: a new CSV file, or an existing one with `--force`."""
    out = pathlib.Path(args.out)
    if out.is_dir():
        raise InputError(f"--out {args.out}: is a directory; name the CSV file to write.")
    _check_not_input(out, args)
    if out.exists() and not args.force:
        raise InputError(
            f"--out {args.out}: the file exists; pass --force to overwrite it, or name a new file."
        )
    _check_writable(out.parent)
    return out


def check_out_dir(args) -> pathlib.Path:
    """`--out` of `fit`: a directory without an earlier result (or with `--force`)."""
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(
            f"--out {args.out}: is a file; name a directory for estimates.json, the parity "
            "plot and the report."
        )
    for name in _FIT_OUTPUTS:
        _check_not_input(out / name, args)
    held = [name for name in _FIT_OUTPUTS if (out / name).exists()]
    if held and not args.force:
        raise InputError(
            f"--out {args.out}: holds a previous result ({', '.join(held)}); pass --force to "
            "overwrite it, or name a new directory."
        )
    _check_writable(out)
    return out


def _points(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {v}")
    return v


def _load_mechanism(path):
    from ..kinetics import Mechanism

    if not os.path.isfile(path):
        raise InputError(f"{path}: no such mechanism file.")
    return Mechanism.from_file(path)


def _jax64():
    import jax

    # float64 is switched on for the command's duration by `main` (a scoped
    # `jax.enable_x64`, so an in-process caller keeps its own setting).
    return jax


def _simulate(args) -> int:
    out = _check_out_file(args)
    mech = _load_mechanism(args.mechanism)
    log_k = read_rates(args.rates, mech)
    names, x0 = read_initial(args.initial, mech)
    jax = _jax64()
    import diffrax
    import jax.numpy as jnp

    from ..kinetics import simulate

    ts = np.linspace(0.0, args.t_end, args.points)
    controller = diffrax.PIDController(rtol=1e-9, atol=1e-11)
    ys = jax.jit(
        jax.vmap(
            lambda x: simulate(
                mech,
                jnp.asarray(log_k),
                x,
                jnp.asarray(ts),
                stepsize_controller=controller,
                throw=False,
            )
        )
    )(jnp.asarray(x0))
    ys = np.asarray(ys)
    failed = [name for name, y in zip(names, ys) if not np.all(np.isfinite(y))]
    if failed:
        raise InputError(
            f"the solve of experiment(s) {failed} failed before t = {args.t_end:g} (the "
            f"stiff solver ran out of steps or diverged). Check the rate constants in "
            f"{args.rates} (ln k spans {np.min(log_k):.3g} to {np.max(log_k):.3g}) or a "
            "shorter --t-end."
        )
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "t", *mech.species])
        for e, name in enumerate(names):
            for j, t in enumerate(ts):
                w.writerow([name, repr(float(t))] + [repr(float(v)) for v in ys[e, j]])
    print(f"wrote {out} ({len(names)} experiment(s) x {len(ts)} times)")
    return 0


def _fit(args) -> int:
    method = args.method or next(iter(_METHODS))
    if args.polish is not None and method != "kinn":
        chosen = "" if args.method else " (the default)"
        raise InputError(
            f"--polish {args.polish} refines a KINN surrogate fit; it does not apply to "
            f"--method {method}{chosen} (drop --polish or use --method kinn)."
        )
    out = check_out_dir(args)
    mech = _load_mechanism(args.mechanism)
    names, x0 = read_initial(args.initial, mech)
    ts, values, species = read_data(args.data, mech, names)
    for s in args.semi_quantitative:
        if s not in species:
            raise InputError(
                f"--semi-quantitative {s!r}: not an observed column of {args.data} ({species})."
            )
    jax = _jax64()
    from ..kinetics import ESMDA, KINN, DirectFit, Observations, estimate

    obs = Observations.make(
        mech,
        ts,
        values,
        x0,
        species=species,
        unknown_scale=args.semi_quantitative,
        noise_std=args.noise_std,
    )
    if method == "kinn":
        estimator = KINN(polish=args.polish or "auto")
    else:
        estimator = {"direct": DirectFit, "esmda": ESMDA}[method]()
    t0 = time.perf_counter()
    est = estimate(mech, obs, estimator, key=jax.random.key(args.seed))
    wall = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "estimates.json").write_text(est.to_json())
    _parity(out / "parity.png", obs, est, [mech.species[i] for i in obs.species])
    about = _about(args, method, values)
    _report(out / "report.md", args, mech, est, wall, about)
    print("\n".join(about))
    print(est.summary())
    print(f"wrote {out / 'estimates.json'}, {out / 'parity.png'}, {out / 'report.md'}")
    return 0


def _parity(path, obs, est, names):
    from .. import plot

    mask = np.asarray(obs.mask)
    vals = np.asarray(obs.values)
    fig, ax = plot.figure(figsize=(4.8, 4.5))
    lo, hi = np.inf, -np.inf
    for j, name in enumerate(names):
        m = mask[..., j]
        x, y = vals[..., j][m], est.fitted[..., j][m]
        ax.plot(x, y, ".", ms=3, label=name)
        lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.set_xlabel("observed")
    ax.set_ylabel("fitted")
    ax.set_title(f"parity ({est.method})")
    ax.legend(fontsize=7, ncol=2)
    plot.save(fig, path)


def _about(args, method, values) -> list[str]:
    """The report's lines on the method (which ran, and why) and on the data."""
    why = _DEFAULT_WHY if args.method is None else "chosen with `--method`"
    observed = values[np.isfinite(values)]
    negative = int(np.sum(observed < 0))
    data = f"- data: {observed.size} observed values, {negative} of them negative"
    if negative:
        data += (
            f" (down to {observed.min():.3g}; kept as measured: noise on a concentration near zero)"
        )
    return [f"- method: {method}, {_METHODS[method]} ({why})", data]


def _report(path, args, mech, est, wall, about):
    lines = [
        f"# sciml kinetics fit ({est.method})",
        "",
        *about,
        f"- mechanism: `{args.mechanism}` ({len(mech.steps)} steps, "
        f"species {', '.join(mech.species)})",
        f"- files: data `{args.data}`; initial states `{args.initial}`; seed {args.seed}",
        f"- wall time: {wall:.1f} s; data RMSE: {est.diagnostics['data_rmse']:.4g}",
    ]
    if "ode_data_rmse" in est.diagnostics:
        ode, own = est.diagnostics["ode_data_rmse"], est.diagnostics["surrogate_data_rmse"]
        lines.append(
            f"- mechanism check: the ODE solved at the surrogate's constants fits the data to "
            f"RMSE {ode:.4g} (the surrogate itself: {own:.4g})"
            + (
                "; the networks fit the data with trajectories the mechanism does not "
                "produce at these constants"
                + (
                    ": treat them with care, rerun with `--polish` or compare `--method "
                    "direct` and `--method esmda`"
                    if "polish_start" not in est.diagnostics
                    else ", so they were refined by the mechanism (below)"
                )
                if est.diagnostics.get("mechanism_misfit")
                else ""
            )
        )
    if est.diagnostics.get("unidentified"):
        lines.append(
            "- not identified by the data alone (std of ln k above the prior's): "
            + ", ".join(est.diagnostics["unidentified"])
        )
    if "polish_start" in est.diagnostics:
        starts = ", ".join(f"{k} {v:.4g}" for k, v in est.diagnostics["polish_starts"].items())
        lines.append(
            f"- ODE-constrained polish: kept the start '{est.diagnostics['polish_start']}' "
            f"(data RMSE by start: {starts})"
        )
    if "start_rmse" in est.diagnostics:
        rmse = ", ".join(f"{v:.4g}" for v in est.diagnostics["start_rmse"])
        lines.append(
            f"- least squares from {len(est.diagnostics['start_rmse'])} first guesses (the "
            f"given one, then random ones around it): kept #{est.diagnostics['start']} "
            f"(data RMSE by start: {rmse})"
        )
    lines += [
        "",
        "| constant | k | ln k | std of ln k |",
        "|---|---|---|---|",
    ]
    for n, v, s in zip(est.constants, est.log_k, est.log_std):
        flag = " (poorly identified)" if s > 1.0 else ""
        lines.append(f"| {n} | {math.exp(v):.6g} | {v:.4f} | {s:.3g}{flag} |")
    lines += [
        "",
        "A standard deviation of ln k above about 1 means the data do not pin that constant "
        "down: treat its value as unknown.",
        "",
        "![parity](parity.png)",
        "",
    ]
    pathlib.Path(path).write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None, prog: str = "sciml kinetics") -> int:
    """Entry point of `sciml kinetics`."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    import jax

    try:
        with jax.enable_x64(True):
            return _simulate(args) if args.command == "simulate" else _fit(args)
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # a MechanismError names the file and line already
        from ..kinetics import MechanismError

        if isinstance(e, MechanismError):
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
