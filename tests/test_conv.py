"""The conv experiment's parts that need no training: the NLL margin derived from dense
dropout's validation effect, the tests that take it, the plain cell, and the section."""

from types import SimpleNamespace

import numpy as np
import pytest
from dropstudy_experiments import conv as C
from dropstudy_experiments.common import all_findings
from dropstudy_experiments.protocol import plain_protocol
from dropstudy_experiments.sections.conv import PLAIN, headline_caveats, section
from fakes import arm_record

from dropstudy.validate import DropstudyError

RATES = (0.0, 0.1, 0.25)


def _fake_raw(
    seeds: int, conv_shift: float, plain_val: float, dense_val: float = 0.1, plain_late: int = 0
) -> dict:
    """Per seed and test example: NLL 0.1 plus an example effect shared by every rate (it
    cancels in paired differences), conv rate 0.25 ``conv_shift`` nats above dense-only
    dropout; the plain net's validation NLL ``plain_val``, the dense-only net's ``dense_val``
    (every other arm's far from both, so reading one of them shows)."""
    rng = np.random.default_rng(0)
    n = 60
    example = 0.05 * rng.standard_normal(n)
    wrong = (np.arange(n) % 30 == 0).astype(float)

    def rows(shift):
        out = []
        for _ in range(seeds):
            row = {}
            for p in ("ws", "mc"):
                each = 0.1 + shift + example + 2e-3 * rng.standard_normal(n)
                row[p] = {"accuracy": 0.97, "nll": float(each.mean())}
                row.setdefault("test_ex", {})[p] = {"nll": each.tolist(), "err": wrong.tolist()}
            row["train"] = {"accuracy": 0.99, "nll": 0.05}
            out.append(row)
        return out

    raw = {}
    for r in RATES:
        shift = conv_shift if r == 0.25 else 0.0
        val = dense_val if r == 0.0 else 0.7 + r
        raw[f"rate={r}"] = {"seeds": rows(shift), "seeds_2w": rows(shift),
                            "arm": arm_record(val, seeds)}  # fmt: skip
    raw["net=plain"] = {"arm": arm_record(plain_val, seeds, plain_late)}
    return raw


def _cfg(**kw) -> C.Config:
    return C.Config(seeds=6, rates=RATES, **kw)


def test_the_nll_margin_is_a_share_of_dense_dropouts_validation_effect():
    """Both NLL equivalences (and their twins) take share x |plain - dense-only| on validation;
    the effect's sign does not matter, and no effect is refused."""
    for share, plain_val in ((0.5, 0.14), (0.25, 0.14), (0.5, 0.06)):
        r = C.summarise(_cfg(margin_share=share), _fake_raw(6, 0.0, plain_val))
        m = r["margin_nll"]
        assert m["effect"]["mean"] == pytest.approx(plain_val - 0.1, abs=1e-3)
        assert m["value"] == pytest.approx(share * 0.04, abs=1e-3) and m["share"] == share
        nll = [r["tests"][k] for k in ("nll_ws", "nll_mc")]
        nll += [t["within_2w"] for t in nll]
        assert [t["margin"] for t in nll] == pytest.approx([m["value"]] * 4)
    with pytest.raises(DropstudyError, match="no margin can be derived"):
        C.summarise(_cfg(), _fake_raw(6, 0.0, plain_val=0.1, dense_val=0.1))


def test_the_margin_decides_the_verdict():
    """Conv dropout 0.01 nats above dense-only: equivalent within half of a 0.1-nat dense
    effect (capped at 0.02), not within half of a 0.004-nat one."""
    wide = C.summarise(_cfg(), _fake_raw(6, 0.01, plain_val=0.2))
    assert wide["tests"]["nll_ws"]["verdict"] == "supported"
    narrow = C.summarise(_cfg(), _fake_raw(6, 0.01, plain_val=0.104))
    assert narrow["tests"]["nll_ws"]["verdict"] == "contradicted"


def test_the_fixed_margin_caps_the_derived_one_and_is_decided_too():
    raw = _fake_raw(6, 0.03, plain_val=0.2)  # 0.03 nats apart, a 0.05-nat derived margin
    for cap, margin, verdict in ((0.02, 0.02, "contradicted"), (0.1, 0.05, "supported")):
        r = C.summarise(_cfg(margin_nll_cap=cap), raw)
        m = r["margin_nll"]
        assert m["value"] == pytest.approx(margin, abs=1e-3) and m["cap"] == cap
        assert m["derived"] == pytest.approx(0.05, abs=1e-3)
        assert r["tests"]["nll_ws"]["verdict"] == verdict
        assert m["replaced"]["value"] == cap and m["replaced"]["verdict"] == (
            "contradicted" if cap == 0.02 else "supported"
        )


def test_plan_trains_the_conv_net_without_any_dropout_by_the_plain_protocol(monkeypatch):
    from dropstudy.data import digits

    cfg = C.Config()
    cells = C.plan(cfg, digits().subset(50, seed=0))
    seen = []
    arm = SimpleNamespace(record={"val_w": [0.1]})
    monkeypatch.setattr(C, "shared_arm", lambda *a: seen.append(a) or arm)
    c = cells["net=plain"]
    assert c.fn(**c.kwargs) == {"arm": arm.record}
    (_, model, protocol, seeds), *_ = seen
    dense = cells["rate=0.0"].kwargs["model"]
    assert dense.dense_rate == cfg.dense_rate > 0 and dense.rate == 0.0
    assert model.rate == 0.0 and model.dense_rate == 0.0
    assert model.clone(dense_rate=cfg.dense_rate) == dense  # the same net otherwise
    assert protocol == plain_protocol(cfg.protocol)  # conv already selects by weight scaling
    assert seeds == cells["rate=0.0"].kwargs["seeds"]


def test_a_config_without_dense_dropout_or_with_a_bad_share_is_refused():
    with pytest.raises(DropstudyError, match="dense_rate=0.0 must be above 0"):
        C.Config(dense_rate=0.0)
    with pytest.raises(DropstudyError, match=r"margin_share=1.5 must be a number in \(0, 1\]"):
        C.Config(margin_share=1.5)


def test_section_shows_the_derivation_the_plain_arm_and_the_caveats():
    cfg = _cfg()
    # a 0.02-nat effect: the derived margin (0.01) is the one used, under the 0.02 cap
    r = {**C.summarise(cfg, _fake_raw(6, 0.0, plain_val=0.08)), "config": cfg.to_dict()}
    r |= {"experiment": "conv", "data": {"name": "digits", "features": 64, "classes": 10}}
    md = section(r)
    assert "The NLL margin, from the validation split" in md and "nan" not in md.lower()
    assert "the plain net is ahead of the dense-only dropout net there" in md
    assert f"+-{r['margin_nll']['value']:.4g} nats" in md and PLAIN in md
    assert "fixed before the run" not in md.split("The primary test")[1].split("\n\n")[0]
    assert isinstance(all_findings(r), list)
    assert "(derived from the validation split by the rule below)" in md
    # the cap binds: the primary's sentence says the fixed margin stands
    capped = {**C.summarise(cfg, _fake_raw(6, 0.0, plain_val=0.2)), "config": cfg.to_dict()}
    capped |= {"experiment": "conv", "data": r["data"]}
    assert "+-0.02 nats (the fixed margin set before the results were seen: the rule below" in (
        section(capped).replace("\n", " ")
    )
    # where the fixed margin stands, the verdict at the rule's wider margin is said too
    at = capped["margin_nll"]["at_rule"]
    assert at["value"] == pytest.approx(capped["margin_nll"]["derived"])
    assert f"at the rule's +-{at['value']:.4g} the test's own verdict would be" in " ".join(
        headline_caveats(capped)
    )
    assert r["margin_nll"]["at_rule"] is None  # the rule's margin is the one used
    # the scale's seeds: smallest, median and largest
    ps = r["margin_nll"]["per_seed"]
    assert ps["min"] <= ps["median"] <= ps["max"] and "per seed from" in md
    said = " ".join(headline_caveats(r))
    assert f"tightens it to +-{r['margin_nll']['value']:.4g}" in said
    assert "margin's scale" not in said
    late = {**C.summarise(cfg, _fake_raw(6, 0.0, plain_val=0.08, plain_late=3)),
            "config": cfg.to_dict()}  # fmt: skip
    assert late["tests"]["nll_ws"]["verdict"] == r["tests"]["nll_ws"]["verdict"]
    assert any("did not converge (3 of 6" in c for c in headline_caveats(late))
