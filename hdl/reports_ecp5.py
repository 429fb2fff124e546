"""What nextpnr-ecp5 said: utilisation and Fmax, failures as one line.

The report (``--report``) and log of nextpnr-ecp5 have the form of
nextpnr-ice40's (`hdl.reports`), with the ECP5's cell kinds: ``TRELLIS_COMB``
(a LUT4, or half a CCU2C carry cell), ``TRELLIS_FF``, ``DP16KD`` (18 Kbit block
RAM), ``MULT18X18D`` (DSP multiplier), ``EHXPLLL``, ``TRELLIS_IO``.
"""

import json
import re

from .reports import Utilisation

__all__ = ["ECP5_KINDS", "read_ecp5_report", "read_ecp5_log", "ecp5_failure"]

#: nextpnr's ECP5 cell kinds; "lc" is a LUT4 so that tables read alike across families.
ECP5_KINDS = {"lc": "TRELLIS_COMB", "ff": "TRELLIS_FF", "ebr": "DP16KD", "dsp": "MULT18X18D", "pll": "EHXPLLL",
              "io": "TRELLIS_IO", "lutram": "TRELLIS_RAMW"}

_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at ([\d.]+) MHz\)")


def read_ecp5_report(text):
    """Parse nextpnr-ecp5's ``--report`` JSON into a `hdl.reports.Utilisation`."""
    report = json.loads(text)
    cells = {}
    for kind, cell in ECP5_KINDS.items():
        entry = report.get("utilization", {}).get(cell)
        if entry is not None:
            cells[kind] = (int(entry["used"]), int(entry["available"]))
    fmax = {name: (float(entry["achieved"]), float(entry["constraint"]))
            for name, entry in report.get("fmax", {}).items()}
    return Utilisation(cells, fmax)


def read_ecp5_log(text):
    """Parse the last "Device utilisation" block and the final Fmax lines of a nextpnr-ecp5 log."""
    names = {cell: kind for kind, cell in ECP5_KINDS.items()}
    block = text.rsplit("Device utilisation:", 1)[-1] if "Device utilisation:" in text else ""
    cells = {names[cell]: (int(used), int(available)) for cell, used, available in _UTIL.findall(block)
             if cell in names}
    fmax = {name: (float(achieved), float(target)) for name, achieved, _, target in _FMAX.findall(text)}
    return Utilisation(cells, fmax)


def ecp5_failure(text):
    """One line saying why nextpnr-ecp5 failed, from its log; "does not fit" when it ran out of cells or the
    placer found no legal placement ("no legal placement" then, though every kind of cell fits in number)."""
    usage = read_ecp5_log(text)
    over = [f"{ECP5_KINDS[kind]} {used}/{available}" for kind, (used, available) in usage.items()
            if used > available]
    detail = None
    if over or re.search(r"no BELs remaining|Failed to find a placement|Unable to place|Design uses", text):
        detail = ", ".join(over) or "placement failed"
    elif re.search(r"Unable to find legal placement|Failed to expand region|utilisation limit", text):
        detail = "no legal placement"          # packed within the device, but the placer could not legalise it
    if detail:
        return f"the design does not fit the device ({detail}); use fewer --rows or --cols"
    errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR")]
    return errors[-1] if errors else "nextpnr-ecp5 failed (see its log)"
