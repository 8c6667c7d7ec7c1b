"""Checkpoints survive a kill mid-save, are checked before anything is built, and only CheckpointError comes out."""
import io
import json
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the fuzz tests need Hypothesis (pip install 'xpnet[dev]')")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import xpnet as xn
from xpnet import checkpoint

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def members(path):
    """{member name: bytes} of a .npz."""
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def repack(parts):
    """A .npz (zip) holding ``parts``, with correct CRCs: what a careful forger would write."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def header_bytes(header):
    return checkpoint_member(np.frombuffer(json.dumps(header).encode(), np.uint8))


def checkpoint_member(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A small Sequential checkpoint (Dense, Dropout, Dense) and its members."""
    path = tmp_path_factory.mktemp("valid") / "net.npz"
    xn.Sequential([xn.layers.Dense(2, 3, activation="tanh"), xn.layers.Dropout(0.2), xn.layers.Dense(3, 2)],
                  seed=0).save(path)
    return path.read_bytes(), members(path)


def load_gives_a_net_or_checkpoint_error(path, data):
    path.write_bytes(bytes(data))
    try:
        net = xn.load(path)
    except xn.errors.CheckpointError:
        return
    assert isinstance(net, xn.Sequential)  # a harmless change (say, in the seed) may still load


# ---- fuzzing load --------------------------------------------------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes(tmp_path, data):
    load_gives_a_net_or_checkpoint_error(tmp_path / "x.npz", data)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
       keep=st.floats(0, 1))
def test_mutated_files(tmp_path, valid, flips, keep):
    data = bytearray(valid[0])
    for position, value in flips:
        data[position % len(data)] = value
    load_gives_a_net_or_checkpoint_error(tmp_path / "x.npz", data[:max(1, int(len(data) * keep))] if keep < 0.9
                                         else data)


@FUZZ
@given(pick=st.integers(0, 100), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 10**6))
def test_mutated_members_with_correct_checksums(tmp_path, valid, pick, flips, cut):
    """Past the zip's CRC check: mangled .npy headers, array data and JSON header text."""
    parts = dict(valid[1])
    name = sorted(parts)[pick % len(parts)]
    member = bytearray(parts[name])
    for position, value in flips:
        member[position % len(member)] = value
    parts[name] = bytes(member[:cut % (len(member) + 1)] if cut % 3 == 0 else member)
    load_gives_a_net_or_checkpoint_error(tmp_path / "x.npz", repack(parts))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=8)


def paths(value, prefix=()):
    """Every place in a JSON value, as key paths."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from paths(inner, prefix + (key,))


@FUZZ
@given(data=st.data())
def test_headers_with_any_json_anywhere(tmp_path, valid, data):
    header = json.loads(np.lib.format.read_array(io.BytesIO(valid[1]["__xpnet_header__.npy"])).tobytes())
    where = data.draw(st.sampled_from(list(paths(header))[1:]))
    target = header
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = data.draw(JSON)
    parts = dict(valid[1], **{"__xpnet_header__.npy": header_bytes(header)})
    load_gives_a_net_or_checkpoint_error(tmp_path / "x.npz", repack(parts))


# ---- checked before anything is built or read -------------------------------------------------------------------

def test_shapes_and_dtypes_are_checked_before_the_network_is_built(tmp_path, monkeypatch):
    net = xn.MLP([2, 3, 2])
    checkpoint.save(tmp_path / "bad.npz", net.config(), {k: w.T for k, w in zip(net.param_names(), net.get_weights())})
    built = []
    monkeypatch.setattr(xn.network, "build", lambda *a, **k: built.append(a))
    with pytest.raises(xn.errors.CheckpointError, match=r"0.W is \(3, 2\) float32, expected \(2, 3\) float32"):
        xn.load(tmp_path / "bad.npz")
    assert built == []


def test_a_forged_huge_shape_is_refused_before_any_allocation(tmp_path):
    """Header, config and .npy header all claim a 40 GB weight matrix; the file holds 200 bytes of it."""
    n = 100_000
    config = dict(xn.MLP([2, 1]).config(), sizes=[n, n], layers=[])
    header = {"format": checkpoint.FORMAT, "version": xn.__version__, "config": config, "extra": {},
              "arrays": {"0.W": [[n, n], "float32"], "0.b": [[n], "float32"]}}
    forged_npy = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, dict(forged_npy, shape=(n, n)))
    parts = {"__xpnet_header__.npy": header_bytes(header), "0.W.npy": buffer.getvalue() + bytes(200),
             "0.b.npy": checkpoint_member(np.zeros(n, np.float32))}
    (tmp_path / "forged.npz").write_bytes(repack(parts))
    with pytest.raises(xn.errors.CheckpointError, match="needs 40000000000 bytes"):
        xn.load(tmp_path / "forged.npz")


def test_load_returns_writable_arrays_that_round_trip(tmp_path, rng):
    arrays = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": np.asfortranarray(rng.standard_normal((2, 5))),
              "c": np.arange(4, dtype=np.int64)}
    checkpoint.save(tmp_path / "c.npz", {"note": "any JSON"}, arrays, extra={"epoch": 3})
    config, loaded, extra = checkpoint.load(tmp_path / "c.npz")
    assert config == {"note": "any JSON"} and extra == {"epoch": 3}
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype and loaded[name].flags.writeable


def test_a_failed_save_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "net.npz"
    xn.MLP([2, 3, 1], seed=0).save(path)
    with pytest.raises(TypeError):
        checkpoint.save(path, {"not json": object()}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.npz"]
    np.testing.assert_array_equal(xn.load(path).get_weights()[0], xn.MLP([2, 3, 1], seed=0).get_weights()[0])


# ---- a save killed mid-write --------------------------------------------------------------------------------------

SAVER = """
import sys, xpnet as xn
big = xn.MLP([4096, 4096], seed=1)  # 64 MiB of float32 weights: a save takes a while
print("saving", flush=True)
while True:
    big.save(sys.argv[1])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals (SIGKILL, SIGINT)")
def test_a_save_killed_mid_write_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "net.npz"
    previous = xn.MLP([2, 3, 1], seed=0)
    previous.save(path)
    for attempt in range(3):  # the kill must land while a temporary file is being written
        child = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "saving"
            deadline = time.monotonic() + 60
            while not any(p.name.startswith(".xpnet-") and p.stat().st_size > 0 for p in tmp_path.iterdir()):
                assert time.monotonic() < deadline, "the child never started writing"
                time.sleep(0.001)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)
            child.stdout.close()
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".xpnet-")]
        if leftovers:
            break
    assert leftovers, "never caught the child mid-write"
    loaded = xn.load(path)  # whole and valid: the old one, or a newer save that had completed
    if loaded.sizes == [2, 3, 1]:
        for a, b in zip(loaded.get_weights(), previous.get_weights()):
            np.testing.assert_array_equal(a, b)
    else:
        assert loaded.sizes == [4096, 4096]


# ---- safetensors: the same header and guarantees -------------------------------------------------------------

SAFE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def valid_safetensors(tmp_path_factory):
    pytest.importorskip("safetensors", reason="writing .safetensors needs pip install 'xpnet[safetensors]'")
    path = tmp_path_factory.mktemp("valid") / "net.safetensors"
    xn.Sequential([xn.layers.Dense(2, 3, activation="tanh"), xn.layers.Dropout(0.2), xn.layers.Dense(3, 2)],
                  seed=0).save(path)
    return path.read_bytes()


def test_safetensors_round_trip_and_other_readers_get_the_weights(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs pip install 'xpnet[safetensors]'")
    net = xn.Sequential([xn.layers.Flatten(), xn.layers.Dense(3, activation="gelu")], input_shape=(2, 2),
                        dtype="float64", seed=3)
    net.save(tmp_path / "n.safetensors")
    back = xn.load(tmp_path / "n.safetensors")
    assert back.config() == net.config() and back.dtype == "float64"
    for a, b in zip(net.get_weights(), back.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    theirs = safetensors_numpy.load_file(tmp_path / "n.safetensors")
    np.testing.assert_array_equal(theirs["1.W"], net.get_weights()[0])
    assert [p.name for p in tmp_path.iterdir()] == ["n.safetensors"]  # no temporary left


@SAFE
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
       keep=st.floats(0, 1))
def test_mutated_safetensors_files(tmp_path, valid_safetensors, flips, keep):
    data = bytearray(valid_safetensors)
    for position, value in flips:
        data[position % len(data)] = value
    load_gives_a_net_or_checkpoint_error(tmp_path / "x.safetensors", data[:max(1, int(len(data) * keep))]
                                         if keep < 0.9 else data)


@SAFE
@given(data=st.binary(max_size=600))
def test_random_bytes_as_safetensors(tmp_path, data):
    load_gives_a_net_or_checkpoint_error(tmp_path / "x.safetensors", data)


@SAFE
@given(data=st.data())
def test_safetensors_headers_with_any_json_anywhere(tmp_path, valid_safetensors, data):
    n = int.from_bytes(valid_safetensors[:8], "little")
    table = json.loads(valid_safetensors[8:8 + n])
    header = json.loads(table["__metadata__"]["__xpnet_header__"])
    document = {"table": table, "header": header}
    where = data.draw(st.sampled_from([p for p in paths(document) if len(p) > 1]))
    target = document
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = data.draw(JSON)
    if isinstance(document["table"], dict) and isinstance(document["table"].get("__metadata__"), dict):
        document["table"]["__metadata__"]["__xpnet_header__"] = json.dumps(document["header"])
    text = json.dumps(document["table"]).encode()
    forged = len(text).to_bytes(8, "little") + text + valid_safetensors[8 + n:]
    load_gives_a_net_or_checkpoint_error(tmp_path / "x.safetensors", forged)


def test_a_safetensors_file_without_our_header_is_refused(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs pip install 'xpnet[safetensors]'")
    safetensors_numpy.save_file({"weight": np.zeros((2, 2), np.float32)}, tmp_path / "hf.safetensors")
    with pytest.raises(xn.errors.CheckpointError, match="a safetensors file but not an xpnet checkpoint"):
        xn.load(tmp_path / "hf.safetensors")


def test_a_suffix_matching_no_format_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(xn.errors.ConfigError, match=r"suffix matches no checkpoint format; xpnet writes \.npz and "
                                                    r"\.safetensors"):
        xn.MLP([2, 1]).save(tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(xn.errors.CheckpointError, match="suffix matches no checkpoint format"):
        xn.load(tmp_path / "model.pt")
