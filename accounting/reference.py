"""The slow, obviously-correct oracle: every money rule (docs/concepts/money-rules.md) written as
directly as possible with Fractions and loops. Fast paths are tested against these functions.
Imports only the standard library and `accounting.money`.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

from accounting.money import largest_remainder

UNALLOCATED = "\uffffunallocated"  # sorts after every account id; loses every tie


def pplns(
    reward: int, shares: list[tuple[str, Fraction, Fraction]], factor: Fraction, fee: Fraction
) -> tuple[dict[str, int], int, int, dict[str, Fraction]]:
    """shares oldest first as (account, share_diff, net_diff). Returns credits, fee, unallocated,
    scores. Each share occupies [before, before + score) on a newest-first axis; what of it lies
    inside [0, factor) counts."""
    fee_sat = reward * fee.numerator // fee.denominator
    distributable = reward - fee_sat
    scores: dict[str, Fraction] = defaultdict(Fraction)
    before = Fraction(0)
    for account, sd, nd in reversed(shares):
        score = sd / nd
        inside = max(Fraction(0), min(before + score, factor) - before)
        if inside:
            scores[account] += inside
        before += score
        if before >= factor:
            break
    filled = sum(scores.values(), Fraction(0))
    quotas = {a: distributable * s / factor for a, s in scores.items()}
    quotas[UNALLOCATED] = distributable * (factor - filled) / factor
    split = largest_remainder(distributable, quotas, last=[UNALLOCATED])
    unallocated = split.pop(UNALLOCATED)
    return {a: c for a, c in split.items() if c or scores[a]}, fee_sat, unallocated, dict(scores)


def prop(
    reward: int, shares: list[tuple[str, Fraction, Fraction]], fee: Fraction
) -> tuple[dict[str, int], int, int]:
    """Every share of the round counts in full: quota = (reward - fee) x score / total score."""
    fee_sat = reward * fee.numerator // fee.denominator
    distributable = reward - fee_sat
    scores: dict[str, Fraction] = defaultdict(Fraction)
    for account, sd, nd in shares:
        scores[account] += sd / nd
    total = sum(scores.values(), Fraction(0))
    if not total:
        return {}, fee_sat, distributable
    split = largest_remainder(
        distributable, {a: distributable * s / total for a, s in scores.items()}
    )
    return split, fee_sat, 0


def solo(reward: int, finder: str, fee: Fraction) -> tuple[dict[str, int], int, int]:
    fee_sat = reward * fee.numerator // fee.denominator
    return {finder: reward - fee_sat}, fee_sat, 0


def fpps(
    shares: list[tuple[str, Fraction, Fraction]],
    subsidy: int,
    avg_fees: Fraction,
    fee: Fraction,
    carry_in: dict[str, Fraction],
) -> tuple[dict[str, int], dict[str, Fraction]]:
    """Each share is worth min(sd, nd) / nd blocks: never more than one."""
    value: dict[str, Fraction] = defaultdict(Fraction, carry_in)
    for account, sd, nd in shares:
        value[account] += min(sd, nd) / nd * (subsidy + avg_fees) * (1 - fee)
    credits = {a: int(v) for a, v in value.items()}  # floor: values are >= 0
    return credits, {a: v - credits[a] for a, v in value.items()}


def hashrate(shares: list[tuple[Fraction, Fraction]], start: Fraction, end: Fraction) -> Fraction:
    total = sum((d for t, d in shares if start < t <= end), Fraction(0))
    return total * 2**32 / (end - start)


def token_seconds(
    start: int,
    end: int,
    opening: dict[str, Fraction],
    transfers: list[tuple[int, str | None, str | None, Fraction]],
) -> dict[str, Fraction]:
    """Walk time second-interval by interval: balance x duration, transfers applied at t."""
    balance = defaultdict(Fraction, opening)
    out: dict[str, Fraction] = defaultdict(Fraction)
    now = start
    for t, src, dst, amount in sorted(transfers, key=lambda x: x[0]):
        for h, b in balance.items():
            out[h] += b * (t - now)
        now = t
        if src is not None:
            balance[src] -= amount
            if balance[src] < 0:
                raise ValueError(f"transfer at {t} makes {src}'s balance negative")
        if dst is not None:
            balance[dst] += amount
    for h, b in balance.items():
        out[h] += b * (end - now)
    return dict(out)


def token_settle(
    start: int,
    end: int,
    opening: dict[str, Fraction],
    transfers: list[tuple[int, str | None, str | None, Fraction]],
    *,
    th_per_token: Fraction,
    w_per_th: Fraction,
    usd_per_kwh: Fraction,
    btc_usd: Fraction,
    delivered_th_per_s: Fraction,
    earnings: int,
    service_usd_per_th_day: Fraction,
    discount: Fraction,
    policy: str,
    debt_in: dict[str, int],
) -> dict[str, object]:
    ts = token_seconds(start, end, opening, transfers)
    total_ts = sum(ts.values(), Fraction(0))
    nominal = total_ts * th_per_token
    delivered = delivered_th_per_s * (end - start)
    ratio = Fraction(1) if nominal == 0 else min(Fraction(1), delivered / nominal)
    share_of_earnings = Fraction(1) if delivered == 0 else min(Fraction(1), nominal / delivered)
    pot = int(earnings * share_of_earnings)
    gross = (
        largest_remainder(pot, {h: pot * s / total_ts for h, s in ts.items()})
        if total_ts
        else {h: 0 for h in ts}
    )
    lines = {}
    for h in sorted(set(ts) | set(debt_in)):
        eff_th_h = ts.get(h, Fraction(0)) * th_per_token * ratio / 3600
        elec_usd = w_per_th * eff_th_h / 1000 * usd_per_kwh * (1 - discount)
        serv_usd = service_usd_per_th_day * eff_th_h / 24
        elec = int(elec_usd * 100_000_000 / btc_usd)
        serv = int(serv_usd * 100_000_000 / btc_usd)
        g = gross.get(h, 0)
        net = g - elec - serv
        d_in = debt_in.get(h, 0)
        after = net - d_in
        paid = max(after, 0)
        debt_out = -after if after < 0 and policy == "carry" else 0
        written = -after if after < 0 and policy == "clamp" else 0
        lines[h] = {
            "gross_sat": g,
            "electricity_sat": elec,
            "service_sat": serv,
            "net_sat": net,
            "debt_in_sat": d_in,
            "paid_sat": paid,
            "debt_out_sat": debt_out,
            "written_off_sat": written,
            "token_seconds": ts.get(h, Fraction(0)),
        }
    return {
        "delivery_ratio": ratio,
        "holders_pot_sat": pot,
        "operator_retained_sat": earnings - pot,
        "lines": lines,
    }
