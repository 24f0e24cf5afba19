"""Checkpoints and saved files that are damaged, hand-edited, in the way, or from another
run: `fit` and `sciml.load` refuse them with the file, the key and the fix, before any
training, and never destroy a file of the user's. Truth for the resume tests is an
uninterrupted run of the same arguments (bit for bit)."""

import json
import os
import shutil
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml


X = jnp.linspace(0.0, 1.0, 8)
DATA = (X, 2.0 * X + 1.0)
STEPS = 20


def loss(m, batch, *, key):
    x, y = batch
    return jnp.mean((m[0] * x + m[1] - y) ** 2)


def _fit(**kwargs):
    args = dict(steps=STEPS, key=jax.random.key(0), data=DATA, progress=False)
    opt = kwargs.pop("optimiser", optax.sgd(0.1))
    return sciml.fit(jnp.zeros(2), kwargs.pop("loss", loss), opt, **(args | kwargs))


class Steps:
    """Records the steps at which it runs; stops the run at `stop`."""

    every = 1

    def __init__(self, stop=None):
        self.stop, self.seen = stop, []

    def __call__(self, info):
        self.seen.append(info.step)
        return info.step == self.stop


@pytest.fixture(scope="module")
def uninterrupted():
    return _fit()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A checkpoint stopped at step 10 of 20."""
    path = tmp_path_factory.mktemp("written") / "ck"
    _fit(checkpoint=path, callbacks=[Steps(stop=10)])
    return path


@pytest.fixture
def ckpt(written, tmp_path):
    path = tmp_path / "ck"
    shutil.copytree(written, path)
    return path


def _edit_meta(path, change):
    meta = json.loads((path / "meta.json").read_text())
    change(meta)
    (path / "meta.json").write_text(json.dumps(meta))


def _assert_refused(match, **kwargs):
    cb = Steps()
    with pytest.raises(ValueError, match=match) as info:
        _fit(callbacks=[cb], **kwargs)
    assert cb.seen == []  # refused before any training
    return str(info.value)


# ----------------------------------------------------------------------------------
# Paths in the way (item 7)


def test_a_saved_model_as_checkpoint_path_is_refused_and_kept(tmp_path):
    model_file = tmp_path / "model.eqx"
    sciml.save(model_file, jnp.arange(2.0))
    before = model_file.read_bytes()
    for every in (None, 5):
        msg = _assert_refused("is a file", checkpoint=model_file, checkpoint_every=every)
        assert str(model_file) in msg and "new directory" in msg
    assert model_file.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.eqx"]


def test_a_folder_of_other_files_is_refused_and_kept(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    msg = _assert_refused("not part of a sciml checkpoint", checkpoint=tmp_path)
    assert "notes.txt" in msg
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_scratch_paths_that_are_files_are_refused(tmp_path):
    (tmp_path / "ck.old").write_text("mine")
    _assert_refused("ck.old", checkpoint=tmp_path / "ck")
    assert (tmp_path / "ck.old").read_text() == "mine"


def test_an_existing_checkpoint_needs_resume_or_overwrite(ckpt, uninterrupted):
    before = (ckpt / "meta.json").read_text()
    msg = _assert_refused("holds a checkpoint of an earlier run", checkpoint=ckpt)
    assert "resume=True" in msg and "overwrite=True" in msg
    assert (ckpt / "meta.json").read_text() == before
    _assert_refused("pass one of them", checkpoint=ckpt, resume=True, overwrite=True)
    _assert_refused("needs `checkpoint=`", overwrite=True)
    # overwrite=True starts afresh (all 20 steps) and replaces the checkpoint.
    cb = Steps()
    fresh = _fit(checkpoint=ckpt, overwrite=True, callbacks=[cb])
    assert cb.seen[0] == 1
    np.testing.assert_array_equal(fresh.model, uninterrupted.model)
    assert json.loads((ckpt / "meta.json").read_text())["step"] == STEPS


def test_resume_without_a_checkpoint_starts_afresh(tmp_path, uninterrupted):
    (tmp_path / "empty").mkdir()
    got = _fit(checkpoint=tmp_path / "empty", resume=True)
    np.testing.assert_array_equal(got.model, uninterrupted.model)


# ----------------------------------------------------------------------------------
# A save killed between its two renames (item 10c)


def test_resume_after_a_kill_between_the_renames(ckpt, uninterrupted):
    # The state on disk after `DIR -> DIR.old` and before `DIR.tmp -> DIR`: the last
    # complete checkpoint (step 10) in DIR.old, a newer one half written in DIR.tmp.
    old, tmp = f"{ckpt}.old", f"{ckpt}.tmp"
    os.replace(ckpt, old)
    os.makedirs(tmp)
    with open(os.path.join(tmp, "state.eqx"), "wb") as f:
        f.write(b"\x93NUMPY half")
    _assert_refused("earlier run", checkpoint=ckpt)
    cb = Steps()
    resumed = _fit(checkpoint=ckpt, resume=True, callbacks=[cb])
    assert cb.seen == list(range(11, STEPS + 1))  # continued from step 10
    np.testing.assert_array_equal(resumed.model, uninterrupted.model)
    np.testing.assert_array_equal(resumed.history["loss"], uninterrupted.history["loss"])
    assert not os.path.exists(old) and not os.path.exists(tmp)
    assert json.loads((ckpt / "meta.json").read_text())["step"] == STEPS


# ----------------------------------------------------------------------------------
# Another run's checkpoint (item 10b)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(optimiser=optax.sgd(0.2)), "stage 0's update"),
        (dict(optimiser=optax.adam(0.1)), "stage 0's update"),
        (dict(data=(X, 3.0 * X)), "same shapes and dtypes but other values"),
        (dict(data=(X[:4], DATA[1][:4])), "stage 0's data"),
        (dict(data=(X.astype(jnp.float32), DATA[1])), "float32"),
        (dict(loss=lambda m, b, *, key: (loss(m, b, key=key), {"extra": 0.0})), "terms"),
    ],
)
def test_resume_with_another_optimiser_or_data_is_refused(ckpt, change, match):
    msg = _assert_refused(match, checkpoint=ckpt, resume=True, **change)
    assert str(ckpt) in msg and "overwrite=True" in msg


def test_resume_with_other_trainable_leaves_is_refused(ckpt):
    cb = Steps()
    with pytest.raises(ValueError, match="trainable leaves") as info:
        sciml.fit(jnp.zeros(3), lambda m, b, *, key: jnp.sum(m**2), optax.sgd(0.1),
                  steps=STEPS, key=jax.random.key(0), data=DATA, progress=False,
                  checkpoint=ckpt, resume=True, callbacks=[cb])
    assert "float64[3]" in str(info.value) and cb.seen == []


# ----------------------------------------------------------------------------------
# Damaged or hand-edited files (item 9)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda m: m.pop("step"), "'step' is missing"),
        (lambda m: m.update(step="ten"), "'step' must be an int"),
        (lambda m: m.update(step=10**12), "'step' must be an int in [0, 20]"),
        (lambda m: m.update(stage=3), "'stage'"),
        (lambda m: m.update(boundaries=[0, "20"]), "'boundaries'"),
        (lambda m: m.update(key=[-1]), "'key'"),
        (lambda m: m.update(version=99), "'version'"),
        (lambda m: m.update(fingerprint=[]), "'fingerprint'"),
        (lambda m: m["fingerprint"].update(stages="x"), "fingerprint"),
    ],
)
def test_hand_edited_metadata_is_named(ckpt, edit, key):
    _edit_meta(ckpt, edit)
    msg = _assert_refused("meta.json|fingerprint", checkpoint=ckpt, resume=True)
    assert key in msg and "overwrite=True" in msg


@pytest.mark.parametrize(
    "text, what",
    [
        (b'{"version": 2, ', "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"version": 2, "version": 2}', "'version' appears twice"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100000, "nested too deeply|not valid JSON"),
    ],
)
def test_corrupt_metadata_is_named(ckpt, text, what):
    (ckpt / "meta.json").write_bytes(text)
    msg = _assert_refused(what, checkpoint=ckpt, resume=True)
    assert "meta.json" in msg and "overwrite=True" in msg


def _rewrite_history(path, change):
    with np.load(path / "history.npz") as h:
        cols = {k: h[k] for k in h.files}
    change(cols)
    np.savez(path / "history.npz", **cols)


@pytest.mark.parametrize(
    "change, what",
    [
        (lambda c: c.update(loss=c["loss"][:5]), "column 'loss' is float64\\[5\\]"),
        (lambda c: c.pop("time"), "column 'time' is missing"),
        (lambda c: c.update(step=c["step"][::-1].copy()), "column 'step'"),
        (lambda c: c.update(loss=np.array(["x"] * 10)), "column 'loss'"),
    ],
)
def test_truncated_or_edited_history_is_named(ckpt, change, what):
    _rewrite_history(ckpt, change)
    msg = _assert_refused(what, checkpoint=ckpt, resume=True)
    assert "history.npz" in msg


def test_history_archive_that_is_garbage_or_truncated(ckpt):
    data = (ckpt / "history.npz").read_bytes()
    for damaged in (b"garbage", data[: len(data) // 2]):
        (ckpt / "history.npz").write_bytes(damaged)
        msg = _assert_refused("not a readable history archive", checkpoint=ckpt, resume=True)
        assert "history.npz" in msg
    (ckpt / "history.npz").unlink()
    _assert_refused("history.npz.*is missing", checkpoint=ckpt, resume=True)


def test_history_with_a_pickled_column_is_not_unpickled(ckpt):
    cols = dict(np.load(ckpt / "history.npz"))
    with zipfile.ZipFile(ckpt / "history.npz", "w") as zf:
        for k, v in cols.items():
            with zf.open(f"{k}.npy", "w") as f:
                np.save(f, v.astype(object) if k == "loss" else v, allow_pickle=True)
    _assert_refused("Python objects", checkpoint=ckpt, resume=True)


@pytest.mark.parametrize(
    "damage, what",
    [
        (lambda b: b[: len(b) - 7], "truncated|ends"),
        (lambda b: b + b"tail", "4 bytes follow the last leaf"),
        (lambda b: b"0" * len(b), "no array record"),
    ],
)
def test_damaged_state_file_is_named(ckpt, damage, what):
    state = ckpt / "state.eqx"
    state.write_bytes(damage(state.read_bytes()))
    msg = _assert_refused(what, checkpoint=ckpt, resume=True)
    assert "state.eqx" in msg and "overwrite=True" in msg


# ----------------------------------------------------------------------------------
# Step counts the int32 step counter cannot hold (item 9)


def test_steps_beyond_the_step_counter_are_refused():
    cb = Steps(stop=1)  # a run that starts stops at once
    with pytest.raises(ValueError, match="int32, at most 2147483647"):
        sciml.fit(jnp.zeros(2), loss, optax.sgd(0.1), steps=2**31, key=jax.random.key(0),
                  data=DATA, progress=False, callbacks=[cb])
    stages = [sciml.Stage(optax.sgd(0.1), 2**31 - 10), sciml.Stage(optax.sgd(0.1), 10)]
    with pytest.raises(ValueError, match="add up to 2147483648 steps"):
        sciml.fit(jnp.zeros(2), loss, stages, key=jax.random.key(0), data=DATA,
                  progress=False, callbacks=[cb])
    assert cb.seen == []


# ----------------------------------------------------------------------------------
# sciml.load (item 10d)


def test_load_refuses_a_dtype_other_than_the_templates(tmp_path):
    sciml.save(tmp_path / "m.eqx", {"w": jnp.arange(3.0), "b": jnp.ones(2, jnp.float32)})
    # Without float64 a float64 leaf used to be cast to float32 silently.
    for x64 in (False, True):
        with jax.enable_x64(x64):
            like = {"w": jnp.zeros(3, jnp.float32), "b": jnp.zeros(2, jnp.float32)}
            with pytest.raises(ValueError) as info:
                sciml.load(tmp_path / "m.eqx", like)
        msg = str(info.value)
        assert "m.eqx" in msg and "['w']" in msg and "stored as float64" in msg
        assert "`like` has float32" in msg and "jax.enable_x64(True)" in msg
    back = sciml.load(tmp_path / "m.eqx", {"w": jnp.zeros(3), "b": jnp.zeros(2, jnp.float32)})
    np.testing.assert_array_equal(back["w"], [0.0, 1.0, 2.0])


def test_load_refuses_trailing_bytes_and_missing_leaves(tmp_path):
    sciml.save(tmp_path / "m.eqx", [jnp.arange(3.0), jnp.arange(2.0)])
    with pytest.raises(ValueError, match="bytes follow the last leaf"):
        sciml.load(tmp_path / "m.eqx", [jnp.zeros(3)])
    with pytest.raises(ValueError, match=r"ends before leaf \[2\]"):
        sciml.load(tmp_path / "m.eqx", [jnp.zeros(3), jnp.zeros(2), jnp.zeros(1)])
    with open(tmp_path / "m.eqx", "ab") as f:
        f.write(b"junk")
    with pytest.raises(ValueError, match="4 bytes follow the last leaf"):
        sciml.load(tmp_path / "m.eqx", [jnp.zeros(3), jnp.zeros(2)])


def test_load_reads_what_save_wrote(tmp_path):
    # Every kind of leaf equinox stores: arrays of several dtypes (bfloat16 as raw
    # bytes), numpy arrays and scalars, Python numbers, typed keys; other leaves kept.
    tree = dict(f=jnp.arange(3.0), h=jnp.ones(2, jnp.bfloat16), i=jnp.arange(4),
                n=np.arange(2.0), g=np.float32(2.5), p=1.5, q=3, r=True,
                k=jax.random.key(7), s="kept")
    sciml.save(tmp_path / "t.eqx", tree)
    like = jax.tree.map(lambda x: x, tree) | dict(f=jnp.zeros(3), p=0.0, q=0, r=False,
                                                  k=jax.random.key(0))
    back = sciml.load(tmp_path / "t.eqx", like)
    for name in ("f", "h", "i", "n"):
        np.testing.assert_array_equal(back[name], tree[name])
        assert back[name].dtype == tree[name].dtype
    assert (back["g"], back["p"], back["q"], back["r"], back["s"]) == (2.5, 1.5, 3, True, "kept")
    np.testing.assert_array_equal(jax.random.key_data(back["k"]), jax.random.key_data(tree["k"]))
