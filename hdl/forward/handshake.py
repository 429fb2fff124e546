"""Calling a stream unit from a state machine: offer one payload, then wait for its one result."""

__all__ = ["call_states"]


def call_states(m, name, unit, payload, on_result, after):
    """Add FSM states `name` (offer `payload` on ``unit.i``) and ``name + "_WAIT"`` (take ``unit.o``).

    Inside a ``with m.FSM():`` block. When the result is valid, the
    statements ``on_result(unit.o.payload)`` run in the sync domain and the
    machine moves to state `after`.
    """
    with m.State(name):
        m.d.comb += [unit.i.valid.eq(1), unit.i.payload.eq(payload)]
        with m.If(unit.i.ready):
            m.next = name + "_WAIT"
    with m.State(name + "_WAIT"):
        m.d.comb += unit.o.ready.eq(1)
        with m.If(unit.o.valid):
            m.d.sync += on_result(unit.o.payload)
            m.next = after
