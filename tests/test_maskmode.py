"""The maskmode experiment's parts that need no training: the NLL margin derived from the
validation split, the tests that take it, and the section."""

from types import SimpleNamespace

import numpy as np
import pytest
from dropstudy_experiments import maskmode as MM
from dropstudy_experiments.common import all_findings
from dropstudy_experiments.protocol import plain_protocol
from dropstudy_experiments.sections.maskmode import headline_caveats, section
from fakes import arm_record

from dropstudy.validate import DropstudyError


def _fake_raw(
    seeds: int, batch_shift: float, plain_val: float, drop_val: float = 0.1, plain_late: int = 0
) -> dict:
    """Per seed and test example: NLL 0.1 plus an example effect shared by both modes (it
    cancels in paired differences), a mask per batch ``batch_shift`` nats above a mask per
    example; the plain net's validation NLL ``plain_val``, the per-example dropout net's
    ``drop_val`` (every other dropout arm's far from it, so reading one of them shows)."""
    rng = np.random.default_rng(0)
    n = 60
    example = 0.05 * rng.standard_normal(n)
    wrong = (np.arange(n) % 30 == 0).astype(float)

    def rows(shift, exact):
        out = []
        for _ in range(seeds):
            row = {}
            for p in ("ws", "mc"):
                each = 0.1 + shift + example + 2e-3 * rng.standard_normal(n)
                s = {"accuracy": 0.97, "nll": float(each.mean())}
                row[p] = {"test": s, "train": s,
                          "test_ex": {"nll": each.tolist(), "err": wrong.tolist()}}  # fmt: skip
            gap = {"mean_kl": 0.01 + 1e-3 * rng.standard_normal(), "disagreement": 0.01}
            row["ws_vs_mc"] = gap
            if exact:
                row["ws_vs_exact"] = gap
            out.append(row)
        return out

    def net(exact):
        shifts = {"per_example": 0.0, "per_batch": batch_shift}
        vals = {"per_example": drop_val if not exact else 0.9, "per_batch": 0.7 + exact}
        out = {"arms": {m: arm_record(vals[m], seeds) for m in MM.MODES}}
        for m in MM.MODES:
            out[m], out[m + "_2w"] = rows(shifts[m], exact), rows(shifts[m], exact)
        return out

    return {
        "net=wide": net(False),
        "net=small": net(True),
        "net=plain": {"arm": arm_record(plain_val, seeds, plain_late)},
    }


def test_the_nll_margin_is_a_share_of_dropouts_validation_effect():
    """Every NLL equivalence takes share x |plain - dropout| on validation; the error test keeps
    its fixed margin; the effect's sign does not matter, and no effect is refused."""
    for share, plain_val in ((0.5, 0.14), (0.25, 0.14), (0.5, 0.06)):
        r = MM.summarise(MM.Config(seeds=6, margin_share=share), _fake_raw(6, 0.0, plain_val))
        m = r["margin_nll"]
        assert m["effect"]["mean"] == pytest.approx(plain_val - 0.1, abs=1e-3)
        assert m["value"] == pytest.approx(share * 0.04, abs=1e-3) and m["share"] == share
        nll = [t for k, t in r["tests"].items() if k.startswith("nll_")]
        assert len(nll) == 4  # by each predictor, each with its twin within 2W
        assert [t["margin"] for t in nll] == pytest.approx([m["value"]] * 4)
        assert r["tests"]["err_mc"]["margin"] == MM.Config().margin_err
    with pytest.raises(DropstudyError, match="no margin can be derived"):
        MM.summarise(MM.Config(seeds=6), _fake_raw(6, 0.0, plain_val=0.1, drop_val=0.1))


def test_the_margin_decides_the_verdict():
    """A mask per batch 0.01 nats above a mask per example: equivalent within half of a 0.1-nat
    dropout effect, not within half of a 0.004-nat one."""
    wide = MM.summarise(MM.Config(seeds=6), _fake_raw(6, 0.01, plain_val=0.2))
    assert wide["tests"]["nll_mc"]["verdict"] == "supported"
    narrow = MM.summarise(MM.Config(seeds=6), _fake_raw(6, 0.01, plain_val=0.104))
    assert narrow["tests"]["nll_mc"]["verdict"] == "contradicted"


def test_plan_trains_the_plain_net_by_the_plain_protocol(monkeypatch):
    """The margin's cell trains the wide net at drop rate 0, by the plain form of the dropout
    nets' protocol, on the same seeds."""
    from dropstudy.data import digits

    cfg = MM.Config()
    cells = MM.plan(cfg, digits().subset(50, seed=0))
    seen = []

    arm = SimpleNamespace(record={"val_w": [0.1]})
    monkeypatch.setattr(MM, "shared_arm", lambda *a: seen.append(a) or arm)
    c = cells["net=plain"]
    assert c.fn(**c.kwargs) == {"arm": arm.record}
    (_, model, protocol, seeds), *_ = seen
    assert model.rate == 0.0 and model.hidden == cfg.hidden
    assert protocol == plain_protocol(cfg.protocol) != cfg.protocol
    assert seeds == cells["net=wide"].kwargs["seeds"]


def test_a_plain_net_not_converged_is_a_caveat_not_a_hold():
    """The plain arm sets the margin's scale: it is no arm of the primary, so its convergence
    holds no test, and the headline says the scale is uncertain."""
    cfg = MM.Config(seeds=6)
    # a 0.02-nat effect: the derived margin (0.01) is the one used, under the 0.02 cap
    late = MM.summarise(cfg, _fake_raw(6, 0.0, plain_val=0.12, plain_late=3))
    ok = MM.summarise(cfg, _fake_raw(6, 0.0, plain_val=0.12))
    assert late["tests"]["nll_mc"]["verdict"] == ok["tests"]["nll_mc"]["verdict"] == "supported"
    assert "not_converged" not in late["tests"]["nll_mc"]
    assert not late["arms"][MM.PLAIN]["converged"]
    say = lambda r: headline_caveats({**r, "config": cfg.to_dict()})  # noqa: E731
    assert any("the plain net that sets it did not converge (3 of 6" in c for c in say(late))
    assert not any("margin's scale" in c for c in say(ok))


def test_the_fixed_margin_caps_the_derived_one_and_is_decided_too():
    """The fixed margin the rule replaced caps it (a post hoc rule may only tighten), and the
    primary's verdict at it is kept and said."""
    raw = _fake_raw(6, 0.03, plain_val=0.2)  # 0.03 nats apart, a 0.05-nat derived margin
    for cap, margin, verdict in ((0.02, 0.02, "contradicted"), (0.1, 0.05, "supported")):
        r = MM.summarise(MM.Config(seeds=6, margin_nll_cap=cap), raw)
        m = r["margin_nll"]
        assert m["value"] == pytest.approx(margin, abs=1e-3) and m["cap"] == cap
        assert m["derived"] == pytest.approx(0.05, abs=1e-3)
        assert r["tests"]["nll_mc"]["verdict"] == verdict
        assert m["replaced"]["value"] == cap and m["replaced"]["verdict"] == (
            "contradicted" if cap == 0.02 else "supported"
        )
        said = " ".join(headline_caveats(r))
        if cap == 0.02:  # the fixed margin stands
            assert "above that fixed margin, which stands" in said
        else:
            assert f"tightens it to +-{m['value']:.4g}" in said and "would be supported" in said


def test_section_shows_the_derivation_and_the_caveat():
    cfg = MM.Config(seeds=6)
    r = {**MM.summarise(cfg, _fake_raw(6, 0.0, plain_val=0.06)), "config": cfg.to_dict()}
    r |= {"experiment": "maskmode"}
    md = section(r)
    assert "The NLL margin, from the validation split" in md and "nan" not in md.lower()
    assert "the plain net is ahead of the dropout net there" in md
    assert "the scale itself is uncertain" not in md  # seeds agree on the effect's sign
    assert f"{r['margin_nll']['value']:.4g} nats" in md and "plain (the margin's scale)" in md
    assert isinstance(all_findings(r), list)
    t = r["tests"][r["primary"]]
    # the design's reach: a caveat when detects exceeds the margin and the test's own verdict
    # is inconclusive; none when it decides either way
    reach = lambda r: [c for c in headline_caveats(r) if "80% power" in c]  # noqa: E731
    wide = t["mde"] > r["margin_nll"]["value"]
    assert bool(reach(r)) == (wide and t["verdict"] == "inconclusive")
    tight = {**r, "margin_nll": {**r["margin_nll"], "value": t["mde"] / 3}}
    for own, said in (("inconclusive", True), ("contradicted", False), ("supported", False)):
        tests = {**r["tests"], r["primary"]: {**t, "verdict_w": own, "verdict": "inconclusive"}}
        got = reach({**tight, "tests": tests})
        assert bool(got) == said and (not said or "3.0x the margin" in got[0])
