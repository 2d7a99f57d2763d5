"""Code-error models: fitting recovers known distributions, sampling matches the table,
and the file format refuses damaged files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from charact.errors import UserError
from charact.lookup import PVT, CodeErrorTable, ErrorModel, error_model_from_samples
from charact.lookup import fileformat as ff
from charact.lookup.error_model import _RAND_BITS, _alias_tables, alias_entry

N_CODES = 32
MU, SIGMA = 0.4, 1.3


def synthetic_samples(per_code: int, seed: int = 0, codes: range = range(6, 26)):
    """code = ideal + round(N(MU, SIGMA)), ideal codes far enough from 0 and 31 that
    saturation has probability < 1e-4."""
    rng = np.random.default_rng(seed)
    ideal = np.repeat(np.array(codes), per_code)
    out = ideal + np.round(rng.normal(MU, SIGMA, ideal.size)).astype(np.int64)
    return ideal, np.clip(out, 0, N_CODES - 1)


@pytest.fixture(scope="module")
def model() -> ErrorModel:
    ideal, out = synthetic_samples(4000)
    return error_model_from_samples(ideal, out, N_CODES, PVT("NOM", 1.0, 27.0),
                                    provenance={"seed": 0})


def test_fit_recovers_mean_and_sigma(model):
    table = model.table()
    n = 4000
    # Rounding N(mu, s) to integers keeps the mean (the bias is ~exp(-2 pi^2 s^2), 1e-14
    # here) and adds the rounding variance 1/12 (Sheppard).
    true_sd = np.sqrt(SIGMA**2 + 1 / 12)
    se_mean = true_sd / np.sqrt(n)  # 0.021
    se_sd = true_sd / np.sqrt(2 * n)  # 0.015
    codes = np.arange(6, 26)
    for est_mu, est_sd in ((table.mean_error(), table.sigma()),
                           (table.fit["mu"], table.fit["sigma"])):
        assert np.all(np.abs(est_mu[codes] - MU) < 4 * se_mean)
        assert np.all(np.abs(est_sd[codes] - true_sd) < 4 * se_sd)
        # pooled over 20 codes the sampling error shrinks by sqrt(20)
        assert abs(est_mu[codes].mean() - MU) < 4 * se_mean / np.sqrt(20)
        assert abs(est_sd[codes].mean() - true_sd) < 4 * se_sd / np.sqrt(20)
    assert np.all(table.count[codes] == n)
    # a discretized Gaussian is the true law: the KS distance is at sampling level
    assert np.all(table.fit["ks"][codes] < 1.63 / np.sqrt(n))  # the 1 % KS critical value


def test_fit_detects_a_wrong_family():
    """The goodness of fit must be able to fail: a two-point error is not Gaussian."""
    rng = np.random.default_rng(1)
    ideal = np.repeat(np.arange(8, 24), 2000)
    out = ideal + np.where(rng.random(ideal.size) < 0.5, -2, 2)
    table = error_model_from_samples(ideal, out, N_CODES).table()
    assert np.all(table.fit["ks"][8:24] > 0.1)


def test_unobserved_and_thin_codes_are_smoothed_and_flagged():
    ideal, out = synthetic_samples(500, seed=2)
    keep = (ideal != 15) & ~((ideal == 16) & (np.arange(ideal.size) % 500 >= 3))
    table = error_model_from_samples(ideal[keep], out[keep], N_CODES, smoothing=2.0).table()
    assert table.interpolated[15] and table.interpolated[0] and not table.interpolated[14]
    assert table.count[16] == 3 and table.count[15] == 0
    # the never-seen code borrows its neighbours' law
    assert abs(table.mean_error()[15] - MU) < 0.2
    assert abs(table.sigma()[15] - np.sqrt(SIGMA**2 + 1 / 12)) < 0.2
    # the thin code keeps mass where its 3 samples never fell
    counts = np.bincount(out[keep][ideal[keep] == 16], minlength=N_CODES)
    assert np.any((counts == 0) & (table.prob[16] > 1e-3))
    # with no smoothing, an observed row is the raw empirical distribution
    raw = error_model_from_samples(ideal[keep], out[keep], N_CODES, smoothing=0.0).table()
    assert np.allclose(raw.prob[16], counts / 3)


@pytest.mark.parametrize("n_codes", [5, 32, 33])
def test_alias_tables_reproduce_the_probabilities_exactly(n_codes):
    """The packed alias table implies P(j) = sum over columns of keep/alias masses."""
    rng = np.random.default_rng(n_codes)
    prob = rng.dirichlet(np.full(n_codes, 0.3), size=n_codes)
    prob[0] = 0.0
    prob[0, n_codes - 1] = 1.0
    packed, k = _alias_tables(prob)
    m = 1 << k
    one = 1 << (_RAND_BITS - k)
    entries = packed.reshape(n_codes, m).astype(np.int64)
    # stored: (threshold - 1) << k | (alias XOR column)
    keep = ((entries >> k) + 1) / one
    alias = (entries & (m - 1)) ^ np.arange(m)
    assert alias_entry(packed, k, 1, 2) == (keep[1, 2] * one, alias[1, 2])
    implied = np.zeros((n_codes, m))
    for r in range(n_codes):
        np.add.at(implied[r], np.arange(m), keep[r] / m)
        np.add.at(implied[r], alias[r], (1 - keep[r]) / m)
    assert np.all(implied[:, n_codes:] < 1e-7)
    assert np.allclose(implied[:, :n_codes], prob, atol=1e-7)


def _chi_square_p(samples: np.ndarray, ideal: np.ndarray, table: CodeErrorTable, code: int):
    sel = samples[ideal == code]
    expected = table.prob[code] * sel.size
    observed = np.bincount(sel, minlength=table.n_codes)
    assert np.all(observed[expected == 0] == 0)
    # pool cells with tiny expectations so the chi-square approximation holds
    big = expected >= 5
    obs = np.append(observed[big], observed[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp).pvalue


def test_numpy_sampling_matches_table_and_keeps_type(model):
    table = model.table()
    rng = np.random.default_rng(5)
    ideal = rng.integers(0, N_CODES, size=(400, 250)).astype(np.uint8)
    noisy = table.sample(ideal, np.random.default_rng(7))
    assert isinstance(noisy, np.ndarray)
    assert noisy.dtype == np.uint8 and noisy.shape == ideal.shape
    pvals = [_chi_square_p(noisy.ravel(), ideal.ravel(), table, c) for c in (0, 3, 15, 31)]
    assert min(pvals) > 1e-4
    # seeded reproducibility
    again = table.sample(ideal, np.random.default_rng(7))
    other = table.sample(ideal, np.random.default_rng(8))
    assert np.array_equal(noisy, again) and not np.array_equal(noisy, other)
    assert np.array_equal(table.sample(ideal, 7), table.sample(ideal, 7))


def test_sampling_a_skewed_table_with_odd_size():
    """A non-power-of-two size and an asymmetric law (padding columns must never win)."""
    prob = np.zeros((5, 5))
    prob[:, 0] = 0.5
    prob[:, 1] = 0.3
    prob[:, 4] = 0.2
    table = CodeErrorTable(prob)
    ideal = np.zeros(200_000, dtype=np.int64)
    out = table.sample(ideal, np.random.default_rng(0))
    assert out.max() <= 4
    assert _chi_square_p(out, ideal, table, 0) > 1e-4


@pytest.mark.torch
def test_torch_sampling_matches_table_and_keeps_type(model):
    torch = pytest.importorskip("torch")
    table = model.table()
    gen = torch.Generator().manual_seed(3)
    ideal = torch.randint(0, N_CODES, (20, 50, 100), generator=gen, dtype=torch.int16)
    noisy = table.sample(ideal, torch.Generator().manual_seed(11))
    assert isinstance(noisy, torch.Tensor)
    assert noisy.dtype == torch.int16 and noisy.shape == ideal.shape
    assert noisy.device == ideal.device
    flat_ideal = ideal.reshape(-1).numpy().astype(np.int64)
    flat = noisy.reshape(-1).numpy().astype(np.int64)
    pvals = [_chi_square_p(flat, flat_ideal, table, c) for c in (0, 3, 15, 31)]
    assert min(pvals) > 1e-4
    again = table.sample(ideal, torch.Generator().manual_seed(11))
    assert torch.equal(noisy, again)
    assert not torch.equal(noisy, table.sample(ideal, torch.Generator().manual_seed(12)))
    torch.manual_seed(4)
    a = table.sample(ideal.long())
    torch.manual_seed(4)
    b = table.sample(ideal.long())
    assert a.dtype == torch.int64 and torch.equal(a, b)


def test_bad_sampling_inputs(model):
    table = model.table()
    with pytest.raises(UserError, match="0..31"):
        table.sample(np.array([0, 32]))
    with pytest.raises(UserError, match="integer"):
        table.sample(np.array([1.0, 2.0]))
    assert table.sample(np.zeros((0, 3), dtype=np.int64)).shape == (0, 3)


def test_import_does_not_load_torch():
    code = ("import sys, numpy as np; from charact.lookup import error_model_from_samples;"
            "m = error_model_from_samples(np.arange(32), np.arange(32), 32);"
            "m.table().sample(np.arange(32)); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_round_trip_and_point_selection(tmp_path, model):
    ideal, out = synthetic_samples(200, seed=9)
    other = error_model_from_samples(ideal, out, N_CODES, PVT("SS", 0.8, 125.0)).table()
    two = ErrorModel({PVT("NOM", 1.0, 27.0): model.table(), PVT("SS", 0.8, 125.0): other},
                     {"seed": 0}, nominal=PVT("NOM", 1.0, 27.0))
    path = tmp_path / "m.json"
    two.save(path)
    back = ErrorModel.load(path)
    assert back.points == two.points and back.nominal == two.nominal
    for p in two.points:
        t0 = two.table(*p)
        t1 = back.table(*p)
        assert np.array_equal(t0.prob, t1.prob) and np.array_equal(t0.count, t1.count)
        assert np.array_equal(t0.interpolated, t1.interpolated)
        assert np.allclose(t0.fit["ks"], t1.fit["ks"], equal_nan=True)
    assert back.provenance["seed"] == 0
    assert back.table() is back.table("NOM")
    assert back.table("ss") is back.table(vdd=0.8)
    assert back.table(temp=125.0 + 1e-9) is back.table("SS", 0.8, 125)
    with pytest.raises(UserError, match=r"unknown corner 'FF'.*NOM, SS"):
        back.table("FF")
    with pytest.raises(UserError, match=r"no PVT point NOM/0\.9.*SS/0\.8V/125C"):
        back.table("NOM", 0.9)
    no_nominal = ErrorModel(dict(two.items()))
    with pytest.raises(UserError, match="no nominal"):
        no_nominal.table()


def _rewrite(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    doc["checksum"] = ff.checksum_of(doc)
    path.write_text(json.dumps(doc))


def test_damaged_files_are_refused(tmp_path, model):
    path = tmp_path / "m.json"
    model.save(path)
    text = path.read_text()

    path.write_text(text[: len(text) // 2])
    with pytest.raises(UserError, match="truncated"):
        ErrorModel.load(path)

    doc = json.loads(text)
    doc["data"]["points"][0]["prob"][3][3] += 0.01
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="checksum mismatch"):
        ErrorModel.load(path)

    doc = json.loads(text)
    doc["provenance"]["seed"] = 1
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="checksum mismatch"):
        ErrorModel.load(path)

    path.write_text(text)
    _rewrite(path, lambda d: d.update(schema="charact.lookup/3"))
    with pytest.raises(UserError, match="unsupported schema version 'charact.lookup/3'"):
        ErrorModel.load(path)

    path.write_text(text)
    _rewrite(path, lambda d: d.update(schema="other/1"))
    with pytest.raises(UserError, match="unknown schema"):
        ErrorModel.load(path)

    path.write_text(text)
    _rewrite(path, lambda d: d["data"]["points"][0].pop("count"))
    with pytest.raises(UserError, match=r"points\[0\]: missing field 'count'"):
        ErrorModel.load(path)

    path.write_text(text)
    _rewrite(path, lambda d: d.pop("provenance"))
    with pytest.raises(UserError, match="missing field 'provenance'"):
        ErrorModel.load(path)

    path.write_text(text)
    _rewrite(path, lambda d: d["data"]["points"][0]["prob"].pop())
    with pytest.raises(UserError, match="shape"):
        ErrorModel.load(path)

    path.write_text(text)
    _rewrite(path, lambda d: d.update(kind="pvt_table"))
    with pytest.raises(UserError, match="expected 'code_error'"):
        ErrorModel.load(path)

    with pytest.raises(UserError, match="not found"):
        ErrorModel.load(tmp_path / "absent.json")


def test_large_models_use_a_checked_sidecar(tmp_path, model):
    path = tmp_path / "big.json"
    ff.write_model_file(path, "code_error", model.to_data(), model.provenance,
                        sidecar_threshold=100)
    side = tmp_path / "big.npz"
    assert side.is_file() and len(path.read_text()) < 20_000
    back = ErrorModel.load(path)
    assert np.array_equal(back.table().prob, model.table().prob)
    # a sidecar from another model is refused
    other = error_model_from_samples(*synthetic_samples(50, seed=4), N_CODES)
    ff.write_model_file(tmp_path / "other.json", "code_error", other.to_data(), {},
                        sidecar_threshold=100)
    (tmp_path / "other.npz").replace(side)
    with pytest.raises(UserError, match="does not match its checksum"):
        ErrorModel.load(path)
    side.unlink()
    with pytest.raises(UserError, match="missing"):
        ErrorModel.load(path)


@pytest.mark.torch
def test_torch_sampling_across_blocks(model, monkeypatch):
    """The torch sampler works in blocks; block edges must not bias or repeat draws."""
    torch = pytest.importorskip("torch")
    import charact.lookup.error_model as em

    table = model.table()
    ideal = torch.full((40_001,), 15, dtype=torch.int32)
    ideal[::2] = 3
    whole = table.sample(ideal, torch.Generator().manual_seed(5))
    monkeypatch.setattr(em, "_BLOCK", 999)  # odd: blocks split the 64-bit words too
    blocks = table.sample(ideal, torch.Generator().manual_seed(5))
    flat_ideal = ideal.numpy().astype(np.int64)
    for out in (whole, blocks):
        flat = out.numpy().astype(np.int64)
        assert min(_chi_square_p(flat, flat_ideal, table, c) for c in (3, 15)) > 1e-4
    # neighbouring blocks draw fresh words: no block repeats the one before it
    assert not torch.equal(blocks[:999], blocks[999:1998])


@pytest.mark.torch
def test_float_levels_are_sampled_in_place_as_the_integer_codes_are(model):
    """The attention hot path samples float levels in place; same generator state, same
    codes as the integer path, and nothing reallocated."""
    torch = pytest.importorskip("torch")
    table = model.table()
    ideal = torch.randint(0, N_CODES, (7, 300, 65), generator=torch.Generator().manual_seed(1),
                          dtype=torch.int32)
    codes = table.sample(ideal, torch.Generator().manual_seed(9))
    levels = ideal.to(torch.float32)
    ptr = levels.data_ptr()
    out = table.sample_levels_(levels, torch.Generator().manual_seed(9))
    assert out is levels and levels.data_ptr() == ptr
    assert torch.equal(levels, codes.to(torch.float32))
    assert not torch.equal(levels, ideal.to(torch.float32))  # the table is not the identity
    with pytest.raises(UserError, match="float"):
        table.sample_levels_(ideal)
    with pytest.raises(UserError, match="contiguous"):
        table.sample_levels_(levels.transpose(0, 1))
