"""Checkpoints of `sciml.fit`: a directory holding `state.eqx`, `history.npz` and
`meta.json`.

A save writes a complete new checkpoint into `DIR.tmp`, moves the current one to
`DIR.old`, moves `DIR.tmp` to `DIR` and deletes `DIR.old`. At every instant `DIR` or
`DIR.old` holds a complete checkpoint, so a run killed between the renames resumes from
`DIR.old`. Everything read back is checked (the metadata's keys and types, the history's
rows, the state's shapes and dtypes) and refused with the file, the key and the fix.
The metadata also holds a fingerprint of the run (trainable leaves, each stage's update,
loss terms and data) so that resuming with another optimiser or other data is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import types
import zipfile
import zlib

import jax
import numpy as np

from . import _serialise


VERSION = 2
FILES = ("meta.json", "state.eqx", "history.npz")
# Bytes of array content hashed into one fingerprint; larger data is compared by shape
# and dtype only, so that a checkpointed fit of a big data set does not start slowly.
_HASH_BUDGET = 64 * 2**20
_FRESH = "pass overwrite=True (with resume=False) to start afresh, replacing the checkpoint"


def _short(value, limit=80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------
# Where a checkpoint goes, before any training


def _is_ours(name: str) -> bool:
    return name in FILES or name.startswith("state.eqx.tmp-")


def _check_dir(path: str, role: str) -> bool:
    """True if `path` is a directory holding checkpoint files; refuses a file or a
    directory holding anything else (`fit` replaces and deletes these directories)."""
    if not os.path.lexists(path):
        return False
    if not os.path.isdir(path) or os.path.islink(path):
        what = "a file (a saved model?)" if os.path.isfile(path) else "not a directory"
        raise ValueError(
            f"sciml.fit: `checkpoint`: {path!r} is {what}; fit {role}. Name a new "
            "directory for the checkpoint (it is created), or move that file away."
        )
    names = sorted(os.listdir(path))
    foreign = [n for n in names if not _is_ours(n)]
    if foreign:
        listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(
            f"sciml.fit: `checkpoint`: {path!r} holds files that are not part of a sciml "
            f"checkpoint ({listed}); fit {role}, deleting what is there. Name a new or "
            "empty directory."
        )
    return bool(names)


def prepare(path, *, resume: bool, overwrite: bool) -> str | None:
    """Checks `fit`'s `checkpoint=` before any work.

    **Returns:**

    The directory to resume from (`path`, or `path.old` after a save was interrupted
    between its renames), or None to start afresh.
    """
    path = os.fspath(path)
    if resume and overwrite:
        raise ValueError(
            "sciml.fit: `resume=True` continues the checkpoint and `overwrite=True` "
            "replaces it; pass one of them."
        )
    here = _check_dir(path, "writes the checkpoint there as a directory of files")
    old = _check_dir(f"{path}.old", "keeps the previous checkpoint there while saving")
    _check_dir(f"{path}.tmp", "writes each new checkpoint there first")
    if not (here or old) or overwrite:
        return None
    source = path if here else f"{path}.old"
    if not resume:
        raise ValueError(
            f"sciml.fit: `checkpoint`: {source!r} holds a checkpoint of an earlier run, "
            "which this run would overwrite. Pass resume=True to continue it, "
            "overwrite=True to start afresh and replace it, or name another directory."
        )
    if not os.path.isfile(os.path.join(source, "meta.json")):
        raise ValueError(
            f"sciml.fit: checkpoint {source!r} has no meta.json, so it cannot be resumed "
            f"(was it edited?); {_FRESH}."
        )
    return source


# ----------------------------------------------------------------------------------
# Writing


def save(path, *, params, opt_state, meta, history):
    """Writes a checkpoint; every process gathers, process 0 alone writes (the directory
    must be on a file system all processes see to resume them)."""
    params, opt_state = _host_local((params, opt_state))
    if jax.process_index() == 0:
        _write(path, params=params, opt_state=opt_state, meta=meta, history=history)
    if jax.process_count() > 1:
        # Nobody reads or resumes the directory while process 0 is replacing it.
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("sciml.fit checkpoint written")


def _host_local(tree):
    """`tree` with every array readable on this process. Under several processes
    (`jax.distributed`), arrays sharded over other hosts' devices (an ensemble's
    members) are gathered: a collective, so every process must call it."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    def gather(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return multihost_utils.process_allgather(x, tiled=True)
        return x

    return jax.tree.map(gather, tree)


def _write(path, *, params, opt_state, meta, history):
    tmp, old = f"{path}.tmp", f"{path}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    _serialise.save(os.path.join(tmp, "state.eqx"), {"params": params, "opt_state": opt_state})
    np.savez(os.path.join(tmp, "history.npz"), **history)
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if os.path.isfile(os.path.join(path, "meta.json")):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    else:
        # No complete checkpoint at `path` (new, empty, or a save was interrupted after
        # its first rename, leaving the last complete one in `old`, which stays until
        # `tmp` is in place).
        shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------
# Reading


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    for k in keys:
        if keys.count(k) > 1:
            raise _Duplicate(k)
    return dict(pairs)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _bad(file, what) -> ValueError:
    return ValueError(
        f"sciml.fit: checkpoint file {file!r}: {what}. It was edited or damaged: restore "
        f"it, or {_FRESH}."
    )


def read_meta(directory) -> dict:
    """The checked metadata of the checkpoint in `directory`."""
    file = os.path.join(directory, "meta.json")
    try:
        with open(file, "rb") as f:
            raw = f.read()
        meta = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except OSError as e:
        raise _bad(file, f"cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise _bad(file, f"is not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise _bad(file, f"is not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise _bad(file, "is nested too deeply to be checkpoint metadata") from None
    except _Duplicate as e:
        raise _bad(file, f"key {e.args[0]!r} appears twice") from None
    if not isinstance(meta, dict):
        raise _bad(file, f"holds a JSON {type(meta).__name__}, not an object")
    version = meta.get("version")
    if version not in (1, VERSION) or not _is_int(version):
        raise _bad(file, f"key 'version' is {_short(version)}; this sciml reads versions 1 "
                   f"and {VERSION}")
    need = ("boundaries", "key", "stage", "step") + (("fingerprint",) if version >= 2 else ())
    for k in need:
        if k not in meta:
            raise _bad(file, f"key {k!r} is missing")
    b, key, stage, step = meta["boundaries"], meta["key"], meta["stage"], meta["step"]
    if not (
        isinstance(b, list) and len(b) >= 2 and all(_is_int(x) for x in b) and b[0] == 0
        and all(x < y for x, y in zip(b, b[1:]))
    ):
        raise _bad(file, f"key 'boundaries' must list the step at which each stage ends, "
                   f"from 0 and increasing; got {_short(b)}")
    if not (isinstance(key, list) and key and all(_is_int(x) and 0 <= x < 2**32 for x in key)):
        raise _bad(file, f"key 'key' must be a list of uint32 key words; got {_short(key)}")
    if not (_is_int(stage) and 0 <= stage < len(b) - 1):
        raise _bad(file, f"key 'stage' must be a stage index in [0, {len(b) - 2}]; got "
                   f"{_short(stage)}")
    if not (_is_int(step) and b[stage] <= step <= b[stage + 1]):
        raise _bad(file, f"key 'step' must be an int in [{b[stage]}, {b[stage + 1]}] (stage "
                   f"{stage}); got {_short(step)}")
    if version >= 2 and not isinstance(meta["fingerprint"], dict):
        raise _bad(file, f"key 'fingerprint' must be an object; got {_short(meta['fingerprint'])}")
    return meta


def read_history(directory, meta) -> dict:
    """The history columns of the checkpoint, one row per step before `meta["step"]`."""
    file = os.path.join(directory, "history.npz")
    step, b = meta["step"], meta["boundaries"]
    out = {}
    try:
        with zipfile.ZipFile(file) as zf:
            names = [info.filename for info in zf.infolist()]
            if len(set(names)) != len(names):
                raise _bad(file, "an array is stored twice")
            for info in zf.infolist():
                col = info.filename.removesuffix(".npy")
                with zf.open(info) as f:
                    shape, fortran, dtype = _serialise.read_header(f)
                    if shape != (step,) or dtype.kind not in "biuf":
                        raise _bad(file, f"column {col!r} is {dtype}{list(shape)}, but a "
                                   f"checkpoint at step {step} has {step} numbers in each "
                                   "column (the history was truncated or mixed up)")
                    left = info.file_size - f.tell()
                    out[col] = _serialise.read_body(f, shape, fortran, dtype, left)
    except FileNotFoundError:
        raise _bad(file, "is missing") from None
    except (_serialise.UnreadableArray, zipfile.BadZipFile, OSError, EOFError, zlib.error,
            NotImplementedError) as e:
        raise _bad(file, f"is not a readable history archive ({e})") from None
    for col in ("step", "stage", "loss", "time"):
        if col not in out:
            raise _bad(file, f"column {col!r} is missing")
    rows = np.arange(step)
    if not np.array_equal(out["step"], rows):
        raise _bad(file, f"column 'step' must hold 0, 1, ..., {step - 1}")
    if not np.array_equal(out["stage"], np.searchsorted(b, rows, side="right") - 1):
        raise _bad(file, f"column 'stage' does not match the stage boundaries {b}")
    return out


def read_state(directory, like):
    """The parameters and optimiser state saved in the checkpoint."""
    file = os.path.join(directory, "state.eqx")
    try:
        return _serialise.load(file, like)
    except FileNotFoundError:
        raise _bad(file, "is missing") from None
    except ValueError as e:
        raise ValueError(
            f"sciml.fit: cannot resume from checkpoint {directory!r}: {e} Resume with the "
            f"model and optimiser it was written with, or {_FRESH}."
        ) from None


def check_resumable(path, meta, now):
    """Refuses a checkpoint written by a run other than this call would make."""
    fresh = f"or {_FRESH}"
    if meta["boundaries"] != now["boundaries"]:
        raise ValueError(
            f"sciml.fit: checkpoint {path!r} was written for stages ending at steps "
            f"{meta['boundaries']}, but this call has {now['boundaries']}. Resume with the "
            f"same stages and steps, {fresh}."
        )
    if meta["key"] != now["key"]:
        raise ValueError(
            f"sciml.fit: checkpoint {path!r} was written with a different `key`; resuming "
            f"needs the same key to reproduce the same batches. Pass that key, {fresh}."
        )
    if meta["version"] < 2:  # written before fingerprints
        return
    what = differences(meta["fingerprint"], now["fingerprint"])
    if what is not None:
        raise ValueError(
            f"sciml.fit: cannot resume checkpoint {path!r}: {what}. Resume with the "
            f"arguments it was written with, {fresh}."
        )


# ----------------------------------------------------------------------------------
# Fingerprints


def fingerprint(params, stages) -> dict:
    """What a resumed run must share with the one that wrote the checkpoint.

    **Arguments:**

    - `params`: the trainable part of the model.
    - `stages`: `(update, loss_terms, data_source)` per stage.

    **Returns:**

    A JSON-ready dict: the trainable leaves (path, shape, dtype), and per stage a hash
    of the update (its functions' names, constants and closure values, and the shapes
    of its state), the loss terms, and the data's arrays (shapes, dtypes and, up to
    64 MiB in all, a hash of their contents).
    """
    budget = {"left": _HASH_BUDGET, "unhashed": False}
    out = {"trainable": _leaves(params), "stages": []}
    for update, terms, source in stages:
        state = jax.eval_shape(update.init, params)
        update_hash = _digest((_describe(update, budget, {}), _leaves(state)))
        budget["unhashed"] = False
        data = jax.tree_util.tree_flatten_with_path(source)[0]
        described = [(jax.tree_util.keystr(p), _describe(x, budget, {})) for p, x in data]
        out["stages"].append(
            {
                "update": update_hash,
                "terms": list(terms),
                "data": {
                    "arrays": _leaves([x for _, x in data if _array_like(x)]),
                    "hash": None if budget["unhashed"] else _digest(described),
                },
            }
        )
    return out


def differences(old, new) -> str | None:
    """The first way fingerprint `new` differs from `old` (None if they agree)."""
    if old == new:
        return None
    if not (isinstance(old, dict) and isinstance(old.get("stages"), list)
            and len(old["stages"]) == len(new["stages"])
            and all(isinstance(s, dict) and isinstance(s.get("data"), dict)
                    for s in old["stages"])):
        return "its fingerprint (in meta.json) is malformed"
    if old.get("trainable") != new["trainable"]:
        return _leaf_difference("the trainable leaves", old.get("trainable"), new["trainable"])
    for s, (a, b) in enumerate(zip(old["stages"], new["stages"])):
        if a.get("update") != b["update"]:
            return (f"stage {s}'s update (the optimiser or one of its settings) is not the "
                    "one the checkpoint was written with")
        if a.get("terms") != b["terms"]:
            return f"stage {s}'s loss returns the terms {b['terms']}, not {a.get('terms')}"
        da, db = a["data"], b["data"]
        if da.get("arrays") != db["arrays"]:
            return _leaf_difference(f"stage {s}'s data", da.get("arrays"), db["arrays"])
        if None not in (da.get("hash"), db["hash"]) and da.get("hash") != db["hash"]:
            return f"stage {s}'s data has the same shapes and dtypes but other values"
    return None


def _leaf_difference(what, old, new) -> str:
    if not isinstance(old, list) or len(old) != len(new):
        n = len(old) if isinstance(old, list) else "?"
        return f"{what} have {len(new)} arrays, the checkpoint's {n}"
    for a, b in zip(old, new):
        if a != b:
            then = f"{a[2]}{a[1]}" if isinstance(a, list) and len(a) == 3 else _short(a)
            return f"{what}: {b[0] or 'the array'} is {b[2]}{b[1]}, in the checkpoint {then}"
    return f"{what} differ"


def _array_like(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray | jax.ShapeDtypeStruct)


def _leaves(tree) -> list:
    return [
        [jax.tree_util.keystr(p), list(x.shape), str(x.dtype)]
        for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
        if _array_like(x)
    ]


def _digest(description) -> str:
    return hashlib.sha256(repr(description).encode()).hexdigest()[:32]


def _name(obj) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _describe(obj, budget, seen, depth=0):
    """A description of `obj` that is equal across processes for equal objects: values
    of plain data, names and constants of functions (not their bytecode, which changes
    with the Python version), array contents by hash. Object reprs are never used
    (they may hold addresses)."""
    if depth > 50:
        return ("deep",)
    if obj is None or isinstance(obj, bool | int | str | bytes):
        return (type(obj).__name__, obj)
    if isinstance(obj, float):
        return ("float", obj.hex())
    if isinstance(obj, complex):
        return ("complex", obj.real.hex(), obj.imag.hex())
    if isinstance(obj, np.dtype):
        return ("dtype", str(obj))
    if isinstance(obj, type):
        return ("type", _name(obj))
    if isinstance(obj, jax.Array | np.ndarray | np.generic):
        return _describe_array(obj, budget)
    if id(obj) in seen:
        return ("cycle",)
    seen[id(obj)] = obj  # held, so its id is not reused while describing

    def rec(x):
        return _describe(x, budget, seen, depth + 1)

    if isinstance(obj, types.FunctionType):
        return ("fn", _name(obj), rec(obj.__code__), rec(obj.__defaults__),
                rec(obj.__kwdefaults__), closure(obj, rec))
    if isinstance(obj, types.CodeType):
        return ("code", obj.co_qualname, obj.co_names, tuple(rec(c) for c in obj.co_consts))
    if isinstance(obj, types.MethodType):
        return ("method", rec(obj.__func__), rec(obj.__self__))
    if isinstance(obj, functools.partial):
        return ("partial", rec(obj.func), rec(obj.args), rec(obj.keywords))
    if isinstance(obj, list | tuple):
        return ("seq", _name(type(obj)), tuple(rec(x) for x in obj))
    if isinstance(obj, dict):
        return ("dict", tuple((rec(k), rec(v)) for k, v in obj.items()))
    if isinstance(obj, set | frozenset):
        return ("set", tuple(sorted(repr(rec(x)) for x in obj)))
    if dataclasses.is_dataclass(obj):  # equinox modules among them
        fields = tuple(
            (f.name, rec(getattr(obj, f.name, None))) for f in dataclasses.fields(obj)
        )
        return ("dataclass", _name(type(obj)), fields)
    return ("object", _name(obj))


def closure(fn, describe) -> tuple:
    """`describe` of the value in each closure cell of `fn` (`("empty",)` if unset)."""
    out = []
    for c in fn.__closure__ or ():
        try:
            out.append(describe(c.cell_contents))
        except ValueError:  # an empty cell
            out.append(("empty",))
    return tuple(out)


def _describe_array(x, budget):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    head = ("array", tuple(x.shape), str(x.dtype))
    nbytes = x.size * x.dtype.itemsize
    data = None
    if nbytes <= budget["left"]:
        try:
            data = np.ascontiguousarray(np.asarray(x)).reshape(-1).view(np.uint8)
        except Exception:  # e.g. sharded over other hosts' devices
            pass
    if data is None:
        budget["unhashed"] = True
        return head
    budget["left"] -= nbytes
    return head + (hashlib.sha256(data).hexdigest()[:32],)
