"""What the FPGA tools said: utilisation and Fmax from nextpnr, failures as one line.

nextpnr writes a JSON report (``--report``) with the cells used and available
per kind and the achieved and constrained frequency per clock; its log says
the same in text (``Info: Max frequency for clock 'x': 41.23 MHz (PASS at
36.00 MHz)``), which is the fallback.
"""

import json
import re

__all__ = ["Utilisation", "read_nextpnr_report", "read_nextpnr_log", "pnr_failure", "format_table",
           "board_top_report"]

# nextpnr's iCE40 cell kinds.
ICE40_KINDS = {"lc": "ICESTORM_LC", "ebr": "ICESTORM_RAM", "spram": "ICESTORM_SPRAM", "dsp": "ICESTORM_DSP",
               "pll": "ICESTORM_PLL", "io": "SB_IO", "gb": "SB_GB"}


class Utilisation(dict):
    """kind ("lc", "ebr", ...) -> (used, available), plus ``fmax``: clock name -> (achieved, target) MHz."""

    def __init__(self, cells=None, fmax=None):
        super().__init__(cells or {})
        self.fmax = dict(fmax or {})

    def used(self, kind):
        return self.get(kind, (0, 0))[0]

    def available(self, kind):
        return self.get(kind, (0, 0))[1]

    @property
    def main_clock(self):
        """(name, achieved MHz, target MHz) of the constrained clock with the lowest achieved Fmax."""
        if not self.fmax:
            return None
        name = min(self.fmax, key=lambda clock: self.fmax[clock][0])
        return (name, *self.fmax[name])


def read_nextpnr_report(text):
    """Parse nextpnr's ``--report`` JSON."""
    report = json.loads(text)
    cells = {}
    for kind, cell in ICE40_KINDS.items():
        entry = report.get("utilization", {}).get(cell)
        if entry is not None:
            cells[kind] = (int(entry["used"]), int(entry["available"]))
    fmax = {name: (float(entry["achieved"]), float(entry["constraint"]))
            for name, entry in report.get("fmax", {}).items()}
    return Utilisation(cells, fmax)


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at ([\d.]+) MHz\)")


def read_nextpnr_log(text):
    """Parse the utilisation (the last "Device utilisation" block) and the final Fmax lines of a nextpnr log."""
    cells = {}
    names = {cell: kind for kind, cell in ICE40_KINDS.items()}
    block = text.rsplit("Device utilisation:", 1)[-1] if "Device utilisation:" in text else ""
    for cell, used, available in _UTIL.findall(block):
        if cell in names:
            cells[names[cell]] = (int(used), int(available))
    fmax = {}
    for name, achieved, _, target in _FMAX.findall(text):     # later lines (after routing) win
        fmax[name] = (float(achieved), float(target))
    return Utilisation(cells, fmax)


def pnr_failure(text, *, lc_total=None):
    """One line saying why nextpnr failed, from its log."""
    too_many = re.search(r"(?:Design uses|Unable to place).*", text)
    usage = read_nextpnr_log(text)
    if too_many or re.search(r"no BELs remaining|Failed to find a placement", text):
        over = [f"{kind.upper()} {used}/{available}" for kind, (used, available) in usage.items() if used > available]
        detail = ", ".join(over) or (too_many[0].strip() if too_many else "placement failed")
        return f"the design does not fit the device ({detail}); use fewer --rows or --cols"
    failed = [(name, achieved, target) for name, (achieved, target) in usage.fmax.items() if achieved < target]
    if failed or "timing" in text.lower() and "FAIL" in text:
        if failed:
            name, achieved, target = min(failed, key=lambda f: f[1])
            return (f"timing not met: {achieved:.2f} MHz achieved for {target:.2f} MHz; "
                    f"rebuild with --freq {int(achieved // 3) * 3} (or another --seed)")
        return "timing not met; rebuild with a lower --freq (or another --seed)"
    errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR")]
    return errors[-1] if errors else "nextpnr failed (see its log)"


def format_table(rows):
    """A two-column text table of (label, value) pairs."""
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def board_top_report(top, integer_model, *, pe, bits, estimate, clock, seed, checkpoint):
    """The part of a board build's ``report.json`` every board shares: the array, its formats and clock,
    the host link's identity, the resource estimate and the model (`top`: a `boards.hosted_top.HostedEngineTop`;
    `clock`: nextpnr's (name, Fmax MHz) of the main clock, or None)."""
    from golden.checkpoint import sha256_of_checkpoint
    engine, identity = top.engine, top.identity
    return {
        "target_mhz": round(top.frequency / 1e6, 6), "fmax_mhz": round(clock[1], 2) if clock else None,
        "pes": engine.rows * engine.columns, "rows": engine.rows, "cols": engine.columns, "pe": pe,
        "bits": bits if pe == "pot" else None, "act_bits": integer_model.act_bits, "acc_bits": engine.acc_bits,
        "layers": len(engine.layout.layers), "rom_bytes": estimate["code_bytes"],
        "peak_macs_per_s": engine.rows * engine.columns * top.frequency,
        "baud": top.baud, "uart_divisor": top.divisor, "max_tokens": identity.max_tokens,
        "columns_per_word": identity.columns_per_word, "code_banks": identity.banks,
        "layout_digest": identity.digest.hex(), "seed": seed,
        "lc_estimate": estimate["lc"], "ebr_estimate": estimate["ebr"],
        "model": str(checkpoint), "model_sha256": sha256_of_checkpoint(checkpoint),
    }
