"""The fingerprint of the numeric primitives: this CPU against every recorded one, and a comparison
that names the primitive that differs."""

from __future__ import annotations

import json

import pytest

from paperlib import fingerprint, kernels, paths

needs_pin = pytest.mark.skipif(kernels.isa_class() != kernels.PINNED_CLASS,
                               reason=f"the records are of the pinned class (this is {kernels.isa_class()})")


@pytest.fixture(scope="module")
def me():
    return fingerprint.fingerprint()


def test_the_primitives_are_deterministic_and_cover_what_training_relies_on(me):
    again = fingerprint.primitives()
    assert again == me["primitives"]
    ops = set(me["primitives"])
    for needed in ("numpy.matmul 4096x64x576", "blas.conv2d fwd 32x16x8x8->32", "blas.conv2d bwd-input 32x16x8x8->32",
                   "blas.conv2d bwd-weight 32x16x8x8->32", "blas.linear fwd+bwd 128x10x512", "dropout mask (torch.rand)",
                   "batchnorm2d train fwd+bwd", "small CNN through paperlib.blas, 40 SGD steps"):
        assert needed in ops


@needs_pin
def test_this_cpu_computes_every_relied_on_primitive_as_every_recorded_cpu(me):
    recorded = fingerprint.records()
    assert recorded, f"no records in {paths.FINGERPRINTS}"
    text, ok = fingerprint.report(me, recorded)
    assert ok, text
    for name, d in fingerprint.compare(me, recorded).items():
        assert int(d["compared"][0]) >= 25, (name, d)  # the probe's primitives at least


def test_an_altered_record_is_reported_with_the_differing_primitive(me, tmp_path):
    rec = json.loads(json.dumps(me))
    rec["cpu"] = "GenuineIntel Some Xeon (family 6, model 999)"
    rec["primitives"]["blas.conv2d bwd-weight 64x64x4x4->64"] = "0" * 16
    rec["primitives"]["torch.mm 128x10x512"] = "f" * 16
    (tmp_path / "intel-family6-model999.json").write_text(json.dumps(rec))
    (tmp_path / "same.json").write_text(json.dumps(me))
    recorded = fingerprint.records(tmp_path)
    d = fingerprint.compare(me, recorded)
    assert d["intel-family6-model999.json"]["relied on"] == ["blas.conv2d bwd-weight 64x64x4x4->64"]
    assert d["intel-family6-model999.json"]["reference"] == ["torch.mm 128x10x512"]
    assert d["same.json"]["relied on"] == [] == d["same.json"]["reference"]
    text, ok = fingerprint.report(me, recorded)
    assert not ok
    assert "DIFFERENT: blas.conv2d bwd-weight 64x64x4x4->64" in text and "family 6, model 999" in text


def test_a_record_of_the_original_probe_is_read_in_its_pinned_configuration(me, tmp_path):
    probe = {"cpu": "AuthenticAMD X", "configs": {"mkl-avx2-strict": {"numpy.matmul 64x64x64": "0" * 16},
                                                  "mkl-compatible-strict": {"numpy.matmul 64x64x64": "1" * 16}}}
    (tmp_path / "probe.json").write_text(json.dumps(probe))
    assert fingerprint.compare(me, fingerprint.records(tmp_path))["probe.json"]["relied on"] == ["numpy.matmul 64x64x64"]


def test_slugs_name_vendor_family_and_model():
    assert fingerprint._slug("AuthenticAMD AMD EPYC (family 25, model 17)") == "amd-family25-model17"
    assert fingerprint._slug("GenuineIntel Intel(R) Xeon(R) (family 6, model 167)") == "intel-family6-model167"
