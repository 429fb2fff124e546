"""The R x C output-stationary systolic array of MAC units, with its result readout."""

from functools import reduce

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import INT8_WEIGHT_BITS, check_acc_bits, check_act_bits
from golden.pot_format import PotFormat

from .int8_pe import Int8PE
from .pot_pe import PotPE

__all__ = ["PE_KINDS", "DEFAULT_BROADCAST_ROWS", "SystolicArray", "check_count"]

#: PE kinds by name: "pot" (barrel shifter) and "int8" (multiplier reference).
PE_KINDS = ("pot", "int8")

# Columns OR-ed together before a pipeline register in the readout.
_READOUT_GROUP = 16

#: Rows a weight reaches in one cycle before the next register stage.
DEFAULT_BROADCAST_ROWS = 4


def check_count(value, what):
    """Return `value` if it is a positive integer, else raise TypeError / ValueError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a positive integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


def check_pe(pe, bits):
    """Validate the PE kind and its code width; return ``(pe, bits)``."""
    if pe not in PE_KINDS:
        raise ValueError(f"PE kind must be one of {', '.join(map(repr, PE_KINDS))}, not {pe!r}")
    if pe == "int8":
        if bits is not None:
            raise ValueError(f"An INT8 array takes no code width (bits=None), not {bits!r}")
        return pe, None
    return pe, PotFormat(bits).bits


class SystolicArray(wiring.Component):
    """An R x C output-stationary array: activations move right, weights and drain flags move down.

    Inputs are *skewed*: beat ``k`` of column ``c`` (a weight) is applied
    ``q(c) = c // broadcast_columns`` cycles after beat ``k`` of column 0, and beat ``k`` of row
    ``r`` (an activation) ``s(r) = r // broadcast_rows`` cycles after beat
    ``k`` of row 0. Weights reach ``broadcast_rows`` consecutive rows in the
    same cycle and then pass a register (the PE's ``w_out``) to the next group
    of rows; likewise an activation reaches ``broadcast_columns`` consecutive
    columns in the same cycle before the PE's ``x_out`` register. So PE ``(r,
    c)`` meets activation and weight of the same beat ``s(r) + q(c)`` cycles
    after it entered. (Broadcasting activations saves the eight activation
    register cells of all but one PE in a group, for a fan-out of
    `broadcast_columns` PEs per activation bit.) (Broadcasting saves the weight and
    drain registers of most PEs, 5 logic cells each at 4-bit codes, for a
    fan-out of `broadcast_rows` PEs per weight bit.) Each PE accumulates the terms of its beats; a beat whose drain
    flag is set ends the tile (see `hdl.pot_pe.PotPE`): the PE's sum is then
    read out on its row's output and the accumulator restarts at zero. A tile of
    ``K`` terms therefore takes ``K + 1`` beats per column, and an idle beat is
    one with the zero weight (`idle_weight`).

    Readout: row ``r`` has one result output. A drain beat applied to column
    ``c`` at cycle ``t`` puts the sum of PE ``(r, c)`` on ``results[r]`` with
    ``valid[r]`` high at cycle ``t + s(r) + latency``; so a tile drained on every
    column with the usual skew yields, on each row, ``C`` results in column
    order on consecutive cycles. Drain beats of one column must be at least
    ``columns`` cycles apart (else two results of a row would collide); the
    engine guarantees it. Nothing is stalled: there is no backpressure inside
    the array.

    Parameters
    ----------
    rows, columns : int
        ``R >= 1`` (tokens at once; 1 is batch-1 decode) and ``C >= 1``.
    act_bits : int
        Activation width, 2 to 16.
    acc_bits : int
        Accumulator width (wraps), at least 2.
    bits : int or None
        PoT code width (3 to 8) for ``pe="pot"``; None for ``pe="int8"``.
    pe : str
        ``"pot"`` or ``"int8"``.
    broadcast_rows : int
        Rows that share a weight register stage (1: a register in every PE).
    broadcast_columns : int
        Columns that share an activation register stage (1: a register in every PE).
    exact_negation : bool
        For ``pe="pot"``: False makes negative terms ones' complements
        (`hdl.pot_pe.PotPE`), so a drained sum is short by the number of
        negative non-zero codes of its tile (`hdl.bias_store.negative_counts`).

    Members
    -------
    x : ``In(signed(act_bits)).array(rows)``
        Activation of each row (skewed).
    w : ``In(weight_shape).array(columns)``
        Weight code (or INT8 weight) of each column (skewed).
    drain : ``In(1).array(columns)``
        Drain flag of each column (skewed with `w`).
    results : ``Out(signed(acc_bits)).array(rows)``
    valid : ``Out(1).array(rows)``
        ``results[r]`` holds a drained sum.

    (Member arrays rather than ``ArrayLayout`` signals: Yosys's abc9 pass trips
    over the ``name[i]`` debug wires that array layouts produce.)

    Raises
    ------
    TypeError, ValueError
        On a parameter of the wrong type or out of range; the message repeats it.
    """

    def __init__(self, *, rows, columns, act_bits=8, acc_bits, bits=4, pe="pot", broadcast_rows=DEFAULT_BROADCAST_ROWS,
                 broadcast_columns=1, exact_negation=True):
        self._rows = check_count(rows, "Row count")
        self._broadcast_rows = check_count(broadcast_rows, "Broadcast rows")
        self._broadcast_columns = check_count(broadcast_columns, "Broadcast columns")
        if not isinstance(exact_negation, bool):
            raise TypeError(f"Exact negation must be a bool, not {exact_negation!r}")
        self._exact_negation = exact_negation
        self._columns = check_count(columns, "Column count")
        self._act_bits = check_act_bits(act_bits)
        self._acc_bits = check_acc_bits(acc_bits)
        self._pe, self._bits = check_pe(pe, bits)
        super().__init__({
            "x": In(signed(self._act_bits)).array(self._rows),
            "w": In(self.weight_shape).array(self._columns),
            "drain": In(1).array(self._columns),
            "results": Out(signed(self._acc_bits)).array(self._rows),
            "valid": Out(1).array(self._rows),
        })

    @property
    def rows(self):
        return self._rows

    @property
    def columns(self):
        return self._columns

    @property
    def broadcast_rows(self):
        return self._broadcast_rows

    @property
    def broadcast_columns(self):
        return self._broadcast_columns

    @property
    def exact_negation(self):
        return self._exact_negation

    def row_skew(self, row):
        """Cycles by which row `row`'s activations (and results) lag row 0's."""
        return row // self._broadcast_rows

    def column_skew(self, column):
        """Cycles by which column `column`'s weights lag column 0's (its drain flag lags by `column`)."""
        return column // self._broadcast_columns

    @property
    def drain_lag(self):
        """Idle beats a column's weight stream needs between its tile's last beat and its drain flag,
        at most: ``c - column_skew(c)`` for the last column."""
        return self._columns - 1 - self.column_skew(self._columns - 1)

    @property
    def pes(self):
        return self._rows * self._columns

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def acc_bits(self):
        return self._acc_bits

    acc_width = acc_bits

    @property
    def bits(self):
        return self._bits

    @property
    def pe(self):
        return self._pe

    @property
    def weight_bits(self):
        return INT8_WEIGHT_BITS if self._pe == "int8" else self._bits

    @property
    def weight_shape(self):
        return signed(INT8_WEIGHT_BITS) if self._pe == "int8" else unsigned(self._bits)

    @property
    def idle_weight(self):
        """The weight of an idle beat: the zero code (or INT8 0)."""
        return 0 if self._pe == "int8" else PotFormat(self._bits).zero_code

    @property
    def readout_stages(self):
        """Pipeline registers in a row's readout (1, or 2 beyond 16 columns)."""
        return 1 if self._columns <= _READOUT_GROUP else 2

    @property
    def latency(self):
        """Cycles from a drain beat at column ``c``'s input to row 0's result of column ``c``
        (row ``r``'s comes `row_skew` ``(r)`` cycles later)."""
        return 1 + self.readout_stages

    def make_pe(self):
        if self._pe == "int8":
            return Int8PE(act_bits=self._act_bits, acc_bits=self._acc_bits)
        return PotPE(act_bits=self._act_bits, bits=self._bits, acc_bits=self._acc_bits,
                     exact_negation=self._exact_negation)

    def elaborate(self, platform):
        m = Module()
        R, C, W = self._rows, self._columns, self._acc_bits
        grid = [[self.make_pe() for _ in range(C)] for _ in range(R)]
        for r in range(R):
            for c in range(C):
                pe = m.submodules[f"pe_{r}_{c}"] = grid[r][c]
                if c == 0:
                    left = self.x[r]
                elif c % self._broadcast_columns == 0:             # a register stage: the PE's left
                    left = grid[r][c - 1].x_out
                else:                                              # broadcast: what the PE on the left gets
                    left = grid[r][c - 1].x_in
                if r == 0:
                    w, drain = self.w[c], self.drain[c]
                elif r % self._broadcast_rows == 0:                # a register stage: the PE above's outputs
                    w, drain = grid[r - 1][c].w_out, grid[r - 1][c].drain_out
                else:                                              # broadcast: what the PE above gets
                    w, drain = grid[r - 1][c].w_in, grid[r - 1][c].drain_in
                m.d.comb += [pe.x_in.eq(left), pe.w_in.eq(w), pe.drain_in.eq(drain)]

        # Readout: at most one PE of a row is valid at a time, so an AND-OR tree selects it.
        for r in range(R):
            row = grid[r]
            group_data, group_valid = [], []
            for first in range(0, C, _READOUT_GROUP):
                pes = row[first:first + _READOUT_GROUP]
                gated = [Mux(pe.valid, pe.acc.as_unsigned(), 0) for pe in pes]
                if self.readout_stages == 1:
                    group_data.append(reduce(lambda a, b: a | b, gated))
                    group_valid.append(reduce(lambda a, b: a | b, [pe.valid for pe in pes]))
                else:
                    d = Signal(W, name=f"readout_{r}_{first}")
                    v = Signal(name=f"readout_valid_{r}_{first}")
                    m.d.sync += [d.eq(reduce(lambda a, b: a | b, gated)),
                                 v.eq(reduce(lambda a, b: a | b, [pe.valid for pe in pes]))]
                    group_data.append(d)
                    group_valid.append(v)
            m.d.sync += [
                self.results[r].eq(reduce(lambda a, b: a | b, group_data)),
                self.valid[r].eq(reduce(lambda a, b: a | b, group_valid)),
            ]
        return m
