"""asic.json, the table and the plot of the ASIC flow."""

import json

from golden.atomic import atomic_write

__all__ = ["ANKHDJET_UM2_PER_TERNARY_WEIGHT", "throughput", "ratios", "table", "write_json", "plot"]

#: Published figure set beside the hard-wired point: ankhdjet (PyPI) gives 2.21 um² per ternary
#: weight for a mask-ROM bitcell on sky130 (storage only, no arithmetic).
ANKHDJET_UM2_PER_TERNARY_WEIGHT = 2.21


def throughput(row):
    """Add "macs_per_cycle", "gmacs" (GMAC/s at the timed clock) and "um2_per_gmacs" to `row`."""
    fmax = (row.get("timing") or {}).get("fmax_mhz")
    macs = row["macs_per_cycle"]
    row["gmacs"] = round(macs * fmax / 1e3, 4) if fmax else None
    row["um2_per_gmacs"] = round(row["area_um2"] / row["gmacs"], 1) if row["gmacs"] else None
    if row["design"] == "hardwired":
        row["um2_per_weight"] = round(row["area_um2"] / macs, 2)
    return row


def ratios(rows):
    """PoT over each INT8 kind, per design and size: area and um² per GMAC/s."""
    by_key = {(r["design"], r["rows"], r["cols"], r["pe"]): r for r in rows}
    out = []
    for (design, n_rows, n_cols, pe), pot in by_key.items():
        if pe != "pot":
            continue
        for other in ("int8", "int8-booth"):
            ref = by_key.get((design, n_rows, n_cols, other))
            if ref is None:
                continue
            entry = {"design": design, "rows": n_rows, "cols": n_cols, "against": other,
                     "area": round(pot["area_um2"] / ref["area_um2"], 3)}
            if pot.get("um2_per_gmacs") and ref.get("um2_per_gmacs"):
                entry["um2_per_gmacs"] = round(pot["um2_per_gmacs"] / ref["um2_per_gmacs"], 3)
            out.append(entry)
    return out


def _size(row):
    if row["design"] == "pe":
        return "1"
    if row["design"] == "hardwired":
        return f"K={row['macs_per_cycle']}"
    return f"{row['rows']}x{row['cols']}"


def table(rows, ratio_rows):
    """The human table: one line per design, then the ratios."""
    header = (f"{'design':<10} {'pe':<10} {'bits':>4} {'size':>6} {'area um2':>11} {'cells':>7} {'flops':>6} "
              f"{'depth':>5} {'equiv':>5} {'period ns':>9} {'MHz':>7} {'um2/GMAC/s':>11} {'mem bits':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        timing = r.get("timing") or {}
        equivalent = {True: "yes", False: "NO", None: "-"}[r["equivalent"]]
        period = timing.get("period_ns")
        lines.append(
            f"{r['design']:<10} {r['pe']:<10} {r['bits'] or '-':>4} {_size(r):>6} {r['area_um2']:>11,.1f} "
            f"{r['cells']:>7} {r['flops']:>6} {r['logic_depth'] if r['logic_depth'] is not None else '-':>5} "
            f"{equivalent:>5} {period if period is not None else '-':>9} "
            f"{timing.get('fmax_mhz') or '-':>7} {r.get('um2_per_gmacs') or '-':>11} {r.get('memory_bits') or '-':>8}")
    methods = sorted({(r.get("timing") or {}).get("method") for r in rows} - {None})
    lines.append(f"timing: {', '.join(methods) or 'not run'}")
    for r in rows:
        if r["design"] == "hardwired":
            lines.append(f"hard-wired {r['pe']}: {r['um2_per_weight']} um2 per weight (adder tree, no storage); "
                         f"published: {ANKHDJET_UM2_PER_TERNARY_WEIGHT} um2 per ternary weight (ankhdjet, "
                         f"mask-ROM bitcell, storage only)")
    for q in ratio_rows:
        size = "PE" if q["design"] == "pe" else f"{q['design']} {q['rows']}x{q['cols']}"
        extra = f", um2/GMAC/s {q['um2_per_gmacs']}" if "um2_per_gmacs" in q else ""
        lines.append(f"PoT/{q['against']} {size}: area {q['area']}{extra}")
    return "\n".join(lines)


def write_json(path, document):
    atomic_write(path, json.dumps(document, indent=1) + "\n")


def plot(path, rows):
    """Area against PEs (log-log), one line per PE kind over PE and arrays; engines dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for pe, colour in (("pot", "tab:blue"), ("int8", "tab:red"), ("int8-booth", "tab:orange")):
        for design, style in ((("pe", "array"), "-o"), (("engine",), "--s")):
            points = sorted((r["rows"] * r["cols"], r["area_um2"]) for r in rows
                            if r["pe"] == pe and r["design"] in design)
            if points:
                label = f"{pe} {'engine' if design == ('engine',) else 'PE / array'}"
                axes.plot(*zip(*points), style, color=colour, label=label)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("PEs (R x C)")
    axes.set_ylabel("area (um², sky130_fd_sc_hd cells)")
    axes.set_title("potgen on sky130: area against PEs")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    tmp.replace(path)
