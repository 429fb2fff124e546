"""Reading nextpnr's reports, and turning a failed place and route into one line."""

import json

from hdl.reports import format_table, pnr_failure, read_nextpnr_log, read_nextpnr_report

REPORT = {
    "utilization": {
        "ICESTORM_LC": {"available": 5280, "used": 4615},
        "ICESTORM_RAM": {"available": 30, "used": 15},
        "ICESTORM_SPRAM": {"available": 4, "used": 4},
        "ICESTORM_DSP": {"available": 8, "used": 0},
        "SB_IO": {"available": 39, "used": 4},
    },
    "fmax": {"clk": {"achieved": 34.1436767578125, "constraint": 30.01921272277832}},
}

LOG = """\
Info: Device utilisation:
Info: 	         ICESTORM_LC:  9999/   5280   189%
Info: Max frequency for clock 'clk': 20.00 MHz (FAIL at 30.00 MHz)
Info: Device utilisation:
Info: 	         ICESTORM_LC:    4615/   5280    87%
Info: 	        ICESTORM_RAM:      15/     30    50%
Info: 	      ICESTORM_SPRAM:       4/      4   100%
Info: 	        ICESTORM_DSP:       0/      8     0%
Info: Max frequency for clock 'clk': 31.31 MHz (PASS at 30.00 MHz)
"""

TOO_BIG = """\
Info: Device utilisation:
Info: 	         ICESTORM_LC:    7527/   5280   142%
Info: 	        ICESTORM_RAM:      23/     30    76%
ERROR: Unable to place cell 'engine.array.pe_3_15.acc_SB_DFFSR_Q', no BELs remaining to implement cell type 'ICESTORM_LC'
"""

SLOW = """\
Info: Max frequency for clock 'clk': 30.55 MHz (FAIL at 36.00 MHz)
Info: Max frequency for clock 'clk': 33.20 MHz (FAIL at 36.00 MHz)
ERROR: Max frequency for clock 'clk': 33.20 MHz (FAIL at 36.00 MHz)
"""


def test_nextpnr_report():
    usage = read_nextpnr_report(json.dumps(REPORT))
    assert usage["lc"] == (4615, 5280) and usage.used("ebr") == 15 and usage.available("spram") == 4
    assert usage.used("dsp") == 0 and usage.used("pll") == 0
    name, achieved, target = usage.main_clock
    assert name == "clk" and round(achieved, 2) == 34.14 and round(target, 2) == 30.02


def test_nextpnr_log_takes_the_last_block():
    usage = read_nextpnr_log(LOG)
    assert usage["lc"] == (4615, 5280) and usage["spram"] == (4, 4) and usage["ebr"] == (15, 30)
    assert usage.fmax == {"clk": (31.31, 30.0)}


def test_failure_too_big():
    line = pnr_failure(TOO_BIG)
    assert line.startswith("the design does not fit the device (LC 7527/5280)")
    assert "fewer --rows or --cols" in line and "\n" not in line


def test_failure_timing():
    line = pnr_failure(SLOW)
    assert line == ("timing not met: 33.20 MHz achieved for 36.00 MHz; rebuild with --freq 33 "
                    "(or another --seed)")


def test_failure_other():
    assert pnr_failure("Info: x\nERROR: something odd\n") == "ERROR: something odd"
    assert pnr_failure("") == "nextpnr failed (see its log)"


def test_format_table():
    assert format_table([("a", 1), ("long label", "x")]) == "a           1\nlong label  x"
