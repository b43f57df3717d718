"""The maskmode experiment's parts that need no training: the NLL margin derived from the
validation split, the tests that take it, and the section."""

import numpy as np
import pytest
from dropstudy_experiments import maskmode as MM
from dropstudy_experiments.common import all_findings
from dropstudy_experiments.protocol import plain_protocol
from dropstudy_experiments.sections.maskmode import headline_caveats, section

from dropstudy.validate import DropstudyError


def _record(val: float, seeds: int) -> dict:
    """A converged arm whose validation NLL within W is ``val`` (plus seed noise)."""
    rng = np.random.default_rng(int(1000 * val) % 97)
    return {"recipe": "adam", "lr": 1e-3, "edge": False, "tuned_as": "x", "window": 100,
            "stop_w": [50] * seeds, "stop_2w": [60] * seeds, "settle_2w": [60] * seeds,
            "diverged": [False] * seeds, "converged": True,
            "val_w": (val + 1e-4 * rng.standard_normal(seeds)).tolist(),
            "tuning": {"adam": {"0.001": {"score": 1.0}}}}  # fmt: skip


def _fake_raw(seeds: int, batch_shift: float, plain_val: float, drop_val: float = 0.1) -> dict:
    """Per seed and test example: NLL 0.1 plus an example effect shared by both modes (it
    cancels in paired differences), a mask per batch ``batch_shift`` nats above a mask per
    example; the plain net's validation NLL ``plain_val``, the per-example dropout net's
    ``drop_val``."""
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
        out = {"arms": {m: _record(drop_val, seeds) for m in MM.MODES}}
        for m in MM.MODES:
            out[m], out[m + "_2w"] = rows(shifts[m], exact), rows(shifts[m], exact)
        return out

    return {
        "net=wide": net(False),
        "net=small": net(True),
        "net=plain": {"arm": _record(plain_val, seeds)},
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


def test_plan_trains_the_plain_net_by_the_plain_protocol():
    from dropstudy.data import digits

    ds = digits().subset(50, seed=0)
    cfg = MM.Config()
    cells = MM.plan(cfg, ds)
    plain = cells["net=plain"].kwargs
    assert plain["model"].rate == cfg.rate and plain["model"].hidden == cfg.hidden
    assert plain["protocol"] == cfg.protocol and plain["seeds"] == cells["net=wide"].kwargs["seeds"]
    assert plain_protocol(cfg.protocol) != cfg.protocol  # the cell trains its plain form


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
    # the caveat follows the design's reach: none when detects is inside the margin
    assert bool(headline_caveats(r)) == (t["mde"] > r["margin_nll"]["value"])
    tight = {**r, "margin_nll": {**r["margin_nll"], "value": t["mde"] / 3}}
    assert headline_caveats(tight) and "3.0x the margin" in headline_caveats(tight)[0]
